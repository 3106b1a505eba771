"""A local, protocol-faithful emulator of a Backend.AI cluster (manager, webserver, storage proxy).

Run it with ``python -m tests.emulator --help``; see docs/emulator.md. It is an
independent model of the server built from the wire-protocol spec and must never
import ``sshkit``.
"""
