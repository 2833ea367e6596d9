"""Proxies that put kites behind one public port: a reverse proxy, and a tunnel proxy for kites behind NAT.

The proxy servers import aiohttp when this package is imported; a kite that
only registers with a proxy needs :mod:`kitelib.proxy.registration`.
"""

from .registration import ProxyRegistration
from .reverse import ReverseProxy
from .tunnel import TunnelProxy
from .tunnel_client import TunnelBridge, open_tunnel

__all__ = ["ProxyRegistration", "ReverseProxy", "TunnelBridge", "TunnelProxy", "open_tunnel"]
