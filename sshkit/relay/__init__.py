"""The stdio ⇄ websocket relay used as ssh's ProxyCommand, and the local TCP forward.

This package is on the hot path of every ssh connection: keep imports light.
"""
