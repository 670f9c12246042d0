"""The timeline picture, as an operator would put it in a capacity plan: a title and a
legend; one row per worker over the simulated time, coloured by the task it runs (a
worker running several tasks shows the one that started first), rows grouped and
labelled by worker group; a WindowPoSt lane with a mark per deadline closed (proven,
late, missed); the cluster's CPU, RAM and GPU use; and a time axis under it all, with
grid lines through every part. Drawn into a numpy array and written as a PNG with zlib
and struct (no imaging library), labelled with a 3x5 pixel font."""
from __future__ import annotations

import struct
import zlib

import numpy as np

WIDTH = 1400
LEFT = 128                   # group labels and plot names
RIGHT = 12
TOP = 40                     # the title and the legend
POST_H = 16                  # the WindowPoSt lane
PLOT_H = 60                  # each utilisation plot
AXIS_H = 24                  # ticks and their labels
GAP = 6
BACKGROUND = (255, 255, 255)
IDLE = (236, 236, 236)
GRID = (200, 200, 200)
INK = (0, 0, 0)
SEPARATOR = (90, 90, 90)
COLOURS = {"AP": (148, 103, 189), "PC1": (31, 119, 180), "PC2": (255, 127, 14), "C1": (44, 160, 44),
           "C2": (23, 190, 207), "FIN": (140, 86, 75), "GET": (188, 189, 34), "WDP": (214, 39, 40),
           "UNS": (227, 119, 194)}
OTHER = (127, 127, 127)
MIN_WIDTH = {"WDP": 3}       # short tasks that must stay visible on a days-long axis
POST_MARKS = {"proven": (44, 160, 44), "late": (255, 127, 14), "missed": (214, 39, 40),
              "unconfirmed": (148, 103, 189), "unknown": (127, 127, 127)}
MARK_W = 3
PLOTS = (("CPU", 0, (31, 119, 180)), ("RAM", 1, (44, 160, 44)), ("GPU", 2, (214, 39, 40)))
TICK_STEPS_H = (1, 2, 3, 6, 12, 24, 48, 168)

_FONT = {  # 3x5 glyphs, rows top to bottom, 1 = ink
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111",
    "0": "111101101101111", "1": "010110010010111", "2": "110001010100111", "3": "110001010001110",
    "4": "101101111001001", "5": "111100110001110", "6": "011100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001110", "%": "101001010100101", " ": "000000000000000",
    "-": "000000111000000", ".": "000000000000010", ":": "000010000010000", "/": "001001010100100",
    ",": "000000000010100", "(": "010100100100010", ")": "010001001001010", "_": "000000000000111",
    "+": "000010111010000", "=": "000111000111000",
}


def size(workers: int) -> tuple[int, int, int]:
    """(width, height, row height) of the picture for this many workers."""
    row = max(1, min(12, 600 // max(workers, 1)))
    height = (TOP + workers * row + GAP + POST_H + GAP + len(PLOTS) * (PLOT_H + GAP) + AXIS_H)
    return WIDTH, height, row


def text_width(text: str, px: int = 2) -> int:
    return 4 * px * len(text)


def _text(img: np.ndarray, x: int, y: int, text: str, colour=INK, px: int = 2) -> int:
    """Draw `text` with its top left at (x, y), each font pixel px x px; the x after it."""
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(glyph):
            if bit == "1":
                yy, xx = y + (i // 3) * px, x + (i % 3) * px
                img[yy:yy + px, xx:xx + px] = colour
        x += 4 * px
    return x


def ticks(end: float) -> list[tuple[float, str]]:
    """(seconds, label) of the time axis: a step of whole hours giving at most 12 ticks,
    labelled in hours since the start (days from a one-day step on)."""
    step_h = next((h for h in TICK_STEPS_H if end / (h * 3600) <= 12), TICK_STEPS_H[-1])
    out, t = [], 0.0
    while t <= end + 1e-9:
        hours = t / 3600
        out.append((t, f"DAY {hours / 24:g}" if step_h >= 24 else f"{hours:g}H"))
        t += step_h * 3600
    return out


def render(spans, workers: dict, end: float, *, posts=(), title: str = "") -> np.ndarray:
    """The picture as an (height, width, 3) uint8 array. `workers`: name -> SimWorker (in
    group order); `posts`: (seconds, status) of each deadline closed."""
    names = list(workers)
    width, height, row = size(len(names))
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    plot_w = width - LEFT - RIGHT
    scale = plot_w / end

    def x_of(t: float) -> int:
        return LEFT + min(int(t * scale), plot_w - 1)

    # title, then the legend: task colours and the WindowPoSt marks
    _text(img, 4, 4, title)
    x = 4
    for task, colour in COLOURS.items():
        img[22:32, x:x + 10] = colour
        x = _text(img, x + 13, 22, task) + 12
    x = _text(img, x + 16, 22, "WINDOWPOST:") + 6
    for status in ("proven", "late", "missed"):
        img[22:32, x:x + MARK_W + 1] = POST_MARKS[status]
        x = _text(img, x + MARK_W + 5, 22, status) + 12

    # the parts under the time axis, top to bottom
    timeline_top = TOP
    lane_top = timeline_top + len(names) * row + GAP
    plots_top = lane_top + POST_H + GAP
    axis_top = plots_top + len(PLOTS) * (PLOT_H + GAP)
    img[timeline_top:timeline_top + len(names) * row, LEFT:LEFT + plot_w] = IDLE
    img[lane_top:lane_top + POST_H, LEFT:LEFT + plot_w] = IDLE
    for k in range(len(PLOTS)):
        y = plots_top + k * (PLOT_H + GAP)
        img[y:y + PLOT_H, LEFT:LEFT + plot_w] = IDLE
    for t, label in ticks(end):                            # grid lines and the axis
        gx = x_of(t)
        for y0, h in ((timeline_top, len(names) * row), (lane_top, POST_H),
                      *((plots_top + k * (PLOT_H + GAP), PLOT_H) for k in range(len(PLOTS)))):
            img[y0:y0 + h, gx] = GRID
        img[axis_top:axis_top + 5, gx] = INK
        lx = min(max(gx - text_width(label) // 2, LEFT), width - RIGHT - text_width(label))
        _text(img, lx, axis_top + 8, label)
    img[axis_top, LEFT:LEFT + plot_w] = INK
    _text(img, 4, axis_top + 8, "TIME")

    # worker rows, grouped: a label per group, a line between groups
    index = {n: i for i, n in enumerate(names)}
    groups: dict[str, list[int]] = {}
    for n, w in workers.items():
        groups.setdefault(w.group.name, []).append(index[n])
    for g, rows in groups.items():
        y0, y1 = timeline_top + rows[0] * row, timeline_top + (rows[-1] + 1) * row
        label = f"{g} ({len(rows)})"
        label = label if text_width(label) <= LEFT - 8 else label[:(LEFT - 8) // 8]
        _text(img, 4, max(y0, (y0 + y1) // 2 - 5), label)
        if rows[0]:
            img[y0, 0:LEFT + plot_w] = SEPARATOR
    for s in sorted(spans, key=lambda s: (s.task in MIN_WIDTH, -s.start)):   # short ones on top
        stop = end if s.end < 0 else min(s.end, end)
        x0 = int(s.start * scale)
        x1 = max(int(stop * scale), x0 + MIN_WIDTH.get(s.task, 1))
        y = timeline_top + index[s.worker] * row
        img[y:y + max(row - (row > 2), 1), LEFT + x0:LEFT + min(x1, plot_w)] = COLOURS.get(s.task, OTHER)

    # the WindowPoSt lane
    _text(img, 4, lane_top + 3, "WINDOWPOST")
    for t, status in posts:
        if status in POST_MARKS and 0 <= t <= end:
            mx = x_of(t)
            img[lane_top:lane_top + POST_H, mx:min(mx + MARK_W, LEFT + plot_w)] = POST_MARKS[status]

    # utilisation over time: capacity-weighted use, one column per pixel
    caps = np.zeros(3)
    for w in workers.values():
        caps += (w.group.cpus, w.group.ram, w.group.gpus)
    use = _use_per_column(spans, end, plot_w)
    for k, (label, i, colour) in enumerate(PLOTS):
        y = plots_top + k * (PLOT_H + GAP)
        _text(img, 4, y + PLOT_H // 2 - 12, label)
        if caps[i]:
            share = np.clip(use[i, :plot_w] / caps[i], 0, 1)
            tops = (PLOT_H - np.round(share * PLOT_H)).astype(int)
            mask = np.arange(PLOT_H)[:, None] >= tops[None, :]
            img[y:y + PLOT_H, LEFT:LEFT + plot_w][mask] = colour
            _text(img, 4, y + PLOT_H // 2 + 2, f"{100 * share.mean():.0f}% MEAN")
        else:
            _text(img, 4, y + PLOT_H // 2 + 2, "NONE")
        _text(img, LEFT - 4 - text_width("100%"), y, "100%")
        _text(img, LEFT - 4 - text_width("0%"), y + PLOT_H - 10, "0%")
    return img


def _use_per_column(spans, end: float, columns: int) -> np.ndarray:
    """(3, columns): mean threads, memory and GPUs in use over each column's time slice.

    The integral of a sum of boxes is piecewise linear: F(t) = sum over spans started by t
    of rate * (t - start), minus the same over spans ended by t; sorted starts and ends
    with cumulative sums give F at every column edge at once."""
    if not spans:
        return np.zeros((3, columns))
    starts = np.array([s.start for s in spans])
    stops = np.array([end if s.end < 0 else min(s.end, end) for s in spans])
    stops = np.maximum(stops, starts)
    rates = np.array([(s.need.threads, s.need.mem, s.need.gpu) for s in spans], float)
    edges = np.linspace(0.0, end, columns + 1)

    def integral(points: np.ndarray) -> np.ndarray:
        order = np.argsort(points)
        p, r = points[order], rates[order]
        cum_r = np.vstack([np.zeros(3), np.cumsum(r, axis=0)])
        cum_rp = np.vstack([np.zeros(3), np.cumsum(r * p[:, None], axis=0)])
        k = np.searchsorted(p, edges, side="right")
        return edges[:, None] * cum_r[k] - cum_rp[k]
    total = integral(starts) - integral(stops)
    return (np.diff(total, axis=0) / (end / columns)).T


def encode_png(img: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of the array (each row with filter type 0)."""
    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_png(path, spans, workers: dict, end: float, *, posts=(), title: str = "") -> tuple[int, int]:
    img = render(spans, workers, end, posts=posts, title=title)
    with open(path, "wb") as f:
        f.write(encode_png(img))
    return img.shape[1], img.shape[0]
