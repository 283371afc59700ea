"""QR images of a payload (PNG through Pillow, SVG as paths).

Rendering costs tens of milliseconds (qrcode scores all eight mask patterns in Python), and an
app refreshing its card shows the same payload for a whole TOTP step, so each process keeps
the latest renders keyed by payload. They are derived data: replicas need not agree on them.
"""

import asyncio
import contextlib
import io
from collections import OrderedDict

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M

CACHE_SIZE = 2048  # ~600 B per PNG, ~4 KB per SVG
_rendered: OrderedDict[tuple[str, str], bytes] = OrderedDict()


def _qr(payload: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(payload)
    code.make(fit=True)
    return code


def png_bytes(payload: str) -> bytes:
    buffer = io.BytesIO()
    _qr(payload).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def svg_bytes(payload: str) -> bytes:
    # With its own white background: on an app's dark theme a transparent code cannot be read.
    buffer = io.BytesIO()
    _qr(payload).make_image(image_factory=qrcode.image.svg.SvgPathFillImage).save(buffer)
    return buffer.getvalue()


async def render(payload: str, fmt: str) -> bytes:
    """Render off the event loop (Pillow work is CPU-bound), or reuse this process's render."""
    key = (fmt, payload)
    image = _rendered.get(key)
    if image is not None:
        with contextlib.suppress(KeyError):  # evicted meanwhile by another thread's loop
            _rendered.move_to_end(key)
        return image
    image = await asyncio.to_thread(png_bytes if fmt == "png" else svg_bytes, payload)
    _rendered[key] = image
    while len(_rendered) > CACHE_SIZE:
        _rendered.popitem(last=False)
    return image
