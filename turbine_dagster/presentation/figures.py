"""Matplotlib figures rendered as PNG embedded in Markdown, the form the Dagster UI displays."""

import base64
import io

import matplotlib

matplotlib.use("Agg")  # headless: runs in workers and CI without a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, title: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"


def figure_markdown(fig: Figure, title: str) -> str:
    return png_markdown(figure_png(fig), title)
