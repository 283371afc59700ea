"""QR images of a payload (PNG through Pillow, SVG as paths)."""

import asyncio
import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


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
    """Render off the event loop: Pillow work is CPU-bound."""
    return await asyncio.to_thread(png_bytes if fmt == "png" else svg_bytes, payload)
