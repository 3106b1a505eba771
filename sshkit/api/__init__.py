"""The Backend.AI API client (session and API modes) with an injectable transport.

May import `requests`, `sshkit.errors` and `sshkit.settings`; never the format
modules, the relay or the CLI. `download` is the pure parser of the session
download answer (multipart with a tar inside: the API's own wire format), so
that `download_session_file` hands callers bytes that are already safety-checked.

`auth` and `tunnel` are stdlib-only: the relay imports them on every ssh connection.
"""
