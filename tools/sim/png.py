"""The timeline picture: one row per worker over the simulated time, coloured by the task
it runs (a worker running several tasks shows the one that started first), then the
cluster's CPU, RAM and GPU use over time. Drawn into a numpy array and written as a PNG
with zlib and struct (no imaging library), labelled with a 3x5 pixel font."""
from __future__ import annotations

import struct
import zlib

import numpy as np

WIDTH = 1200
LEFT = 40                    # room for labels
TOP = 16                     # the legend
PLOT_H = 60                  # each utilisation plot
GAP = 6
BACKGROUND = (255, 255, 255)
IDLE = (236, 236, 236)
COLOURS = {"AP": (148, 103, 189), "PC1": (31, 119, 180), "PC2": (255, 127, 14), "C1": (44, 160, 44),
           "C2": (23, 190, 207), "FIN": (140, 86, 75), "GET": (188, 189, 34), "WDP": (214, 39, 40),
           "UNS": (227, 119, 194)}
OTHER = (127, 127, 127)
PLOTS = (("CPU", 0, (31, 119, 180)), ("RAM", 1, (44, 160, 44)), ("GPU", 2, (214, 39, 40)))

_FONT = {  # 3x5 glyphs, rows top to bottom, 1 = ink
    "A": "010101111101101", "C": "011100100100011", "D": "110101101101110", "E": "111100110100111",
    "F": "111100110100100", "G": "011100101101011", "I": "111010010010111", "M": "101111111101101",
    "N": "110101101101101", "O": "010101101101010", "P": "110101110100100", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "W": "101101111111101",
    "K": "101101110101101", "L": "100100100100111", "Y": "101101010010010", "H": "101101111101101",
    "B": "110101110101110", "V": "101101101101010", "X": "101101010101101",
    "0": "111101101101111", "1": "010110010010111", "2": "110001010100111", "3": "110001010001110",
    "4": "101101111001001", "5": "111100110001110", "6": "011100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001110", "%": "101001010100101", " ": "000000000000000",
    "-": "000000111000000", ".": "000000000000010", ":": "000010000010000", "/": "001001010100100",
}


def size(workers: int) -> tuple[int, int, int]:
    """(width, height, row height) of the picture for this many workers."""
    row = max(1, min(8, 600 // max(workers, 1)))
    height = TOP + workers * row + GAP + len(PLOTS) * (PLOT_H + GAP) + 8
    return WIDTH, height, row


def _text(img: np.ndarray, x: int, y: int, text: str, colour=(0, 0, 0), px: int = 2) -> int:
    """Draw `text` with its top left at (x, y), each font pixel px x px; the x after it."""
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(glyph):
            if bit == "1":
                yy, xx = y + (i // 3) * px, x + (i % 3) * px
                img[yy:yy + px, xx:xx + px] = colour
        x += 4 * px
    return x


def render(spans, workers: dict, end: float) -> np.ndarray:
    """The picture as an (height, width, 3) uint8 array. `workers`: name -> SimWorker."""
    names = list(workers)
    width, height, row = size(len(names))
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    plot_w = width - LEFT - 4
    scale = plot_w / end
    x = LEFT
    for task, colour in COLOURS.items():                  # the legend
        img[3:13, x:x + 10] = colour
        x = _text(img, x + 13, 3, task) + 10
    _text(img, x + 20, 3, f"{end / 86400:g} DAYS")
    img[TOP:TOP + len(names) * row, LEFT:LEFT + plot_w] = IDLE
    index = {n: i for i, n in enumerate(names)}
    for s in sorted(spans, key=lambda s: -s.start):        # earlier spans drawn last (on top)
        stop = end if s.end < 0 else min(s.end, end)
        x0, x1 = int(s.start * scale), max(int(stop * scale), int(s.start * scale) + 1)
        y = TOP + index[s.worker] * row
        img[y:y + max(row - (row > 2), 1), LEFT + x0:LEFT + min(x1, plot_w)] = COLOURS.get(s.task, OTHER)
    # utilisation over time: capacity-weighted use, one column per pixel
    caps = np.zeros(3)
    for w in workers.values():
        caps += (w.group.cpus, w.group.ram, w.group.gpus)
    use = _use_per_column(spans, end, plot_w)
    y = TOP + len(names) * row + GAP
    for label, k, colour in PLOTS:
        img[y:y + PLOT_H, LEFT:LEFT + plot_w] = IDLE
        if caps[k]:
            share = np.clip(use[k, :plot_w] / caps[k], 0, 1)
            tops = (PLOT_H - np.round(share * PLOT_H)).astype(int)
            rows = np.arange(PLOT_H)[:, None]
            mask = rows >= tops[None, :]
            block = img[y:y + PLOT_H, LEFT:LEFT + plot_w]
            block[mask] = colour
            _text(img, 2, y + PLOT_H // 2 - 12, label)
            _text(img, 2, y + PLOT_H // 2 + 2, f"{100 * share.mean():.0f}%")
        else:
            _text(img, 2, y + PLOT_H // 2 - 5, label)
        y += PLOT_H + GAP
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


def write_png(path, spans, workers: dict, end: float) -> tuple[int, int]:
    img = render(spans, workers, end)
    with open(path, "wb") as f:
        f.write(encode_png(img))
    return img.shape[1], img.shape[0]
