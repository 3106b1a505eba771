"""The Backend.AI API client (session and API modes) with an injectable transport.

May import `requests` and `sshkit.errors`; never `sshkit.formats`, the relay or the CLI.
"""
