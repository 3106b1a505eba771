"""sshkit: SSH, SFTP and IDE access to Backend.AI compute sessions.

Importing this package is cheap on purpose: `sshkit relay` runs on every ssh
connection, so nothing heavy is imported here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
