"""Pure format modules: bytes or text in, bytes or text out.

Nothing here opens files, reads the environment, looks at the clock or draws
randomness; callers pass those in. Allowed imports: the standard library,
`cryptography`, `argon2` and `sshkit.errors`.
"""
