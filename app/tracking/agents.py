"""Who fetched a pixel or a link: a person's mail client, a mail-privacy proxy, or a scanner.

Pure. Mail-privacy proxies fetch every image of a message when it is delivered or displayed, whether or not
the person reads it: their opens are flagged ``machine`` (they still sync: the address received the
message). The signals, as mail providers and ESPs document them:

- Apple Mail Privacy Protection: images are fetched through Apple's proxies with the bare user agent
  ``Mozilla/5.0`` (no platform, no engine), from Apple's address space (17.0.0.0/8 among others).
- Gmail's image proxy: ``… (via ggpht.com GoogleImageProxy)``.
- Yahoo Mail's proxy: ``YahooMailProxy``.
- Link scanners and preview fetchers (security gateways, chat unfurlers, HTTP libraries) are ``bot``.
"""

from __future__ import annotations

import functools
import ipaddress
import re

HUMAN = "human"
APPLE_MPP = "apple_mpp"
GOOGLE_IMAGE_PROXY = "google_image_proxy"
YAHOO_PROXY = "yahoo_proxy"
BOT = "bot"
MACHINE = frozenset({APPLE_MPP, GOOGLE_IMAGE_PROXY, YAHOO_PROXY, BOT})

_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
_BOT = re.compile(
    r"bot\b|crawler|spider|scanner|preview|python-requests|python-urllib|curl/|wget/|go-http-client|"
    r"java/|okhttp|libwww|httpclient|headlesschrome|barracuda|mimecast|proofpoint|symantec|"
    r"forcepoint|trendmicro|cisco|ironport|microsoft office|ms-office|safelinks|linkexpanding|"
    r"facebookexternalhit|whatsapp|skypeuripreview",
    re.IGNORECASE,
)


def classify(user_agent: str | None, address: str | None) -> tuple[str, bool]:
    """The agent class and whether the fetch was a machine's rather than a person's."""
    return _classify(user_agent or "", _in_apple_network(address))


# A handful of mail clients and image proxies fetch most pixels: the answer for a user agent is kept.
@functools.lru_cache(maxsize=512)
def _classify(user_agent: str, from_apple: bool) -> tuple[str, bool]:
    agent = user_agent.strip()
    if "GoogleImageProxy" in agent:
        return GOOGLE_IMAGE_PROXY, True
    if "YahooMailProxy" in agent:
        return YAHOO_PROXY, True
    if agent == "Mozilla/5.0" or (from_apple and "AppleWebKit" not in agent):
        return APPLE_MPP, True
    if not agent or _BOT.search(agent):
        return BOT, True
    return HUMAN, False


def _in_apple_network(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address) in _APPLE_NETWORK
    except ValueError:
        return False
