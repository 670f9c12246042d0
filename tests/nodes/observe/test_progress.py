"""Progress of long commands: the bar's text, throttling under a fake clock, in-place
redraws on a terminal and plain lines elsewhere, and when it is shown at all."""
import io

from zqnode.nodes.observe import progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bar_and_byte_line():
    assert progress.bar(0.0, 8) == "[........]"
    assert progress.bar(0.5, 8) == "[####....]"
    assert progress.bar(1.5, 8) == "[########]"
    assert progress.byte_line("commp", 1 << 30, 4 << 30, 2.0) == (
        "commp [######..................]  25.0% 1.0 GiB of 4.0 GiB, 512.0 MiB/s, 6s left")
    assert progress.byte_line("commp", 4 << 30, 4 << 30, 8.0) == (
        "commp [########################] 100.0% 4.0 GiB of 4.0 GiB, 512.0 MiB/s")
    assert progress.byte_line("commp", 0, 0, 0.0) == (
        "commp [########################] 100.0% 0 B of 0 B")
    assert [progress.duration_text(s) for s in (4.4, 59.6, 61, 3725)] == ["4s", "1m00s", "1m01s",
                                                                        "1h02m"]


def test_byte_progress_is_throttled_and_redrawn_in_place_on_a_terminal():
    clock, out = Clock(), Tty()
    p = progress.ByteProgress(out, 1000, "commp", every=1.0, clock=clock)
    p.update(100)                        # the first update shows
    clock.now += 0.5
    p.update(200)                        # too soon
    clock.now += 0.5
    p.update(500)
    clock.now += 1.0
    p.finish()
    assert out.getvalue().split("\r") == [
        "",
        "commp [##......................]  10.0% 100 B of 1000 B\x1b[K",
        "commp [############............]  50.0% 500 B of 1000 B, 500 B/s, 1s left\x1b[K",
        "commp [############............]  50.0% 500 B of 1000 B, 250 B/s, 2s left\x1b[K\n"]


def test_byte_progress_writes_lines_when_not_a_terminal():
    clock, out = Clock(), io.StringIO()
    p = progress.ByteProgress(out, 2048, "commp", every=1.0, clock=clock)
    p.update(1024)
    clock.now += 2.0
    p.update(2048)
    p.finish()
    assert out.getvalue().splitlines() == [
        "commp [############............]  50.0% 1.0 KiB of 2.0 KiB",
        "commp [########################] 100.0% 2.0 KiB of 2.0 KiB, 1.0 KiB/s",
        "commp [########################] 100.0% 2.0 KiB of 2.0 KiB, 1.0 KiB/s"]


def test_counting_reader_reports_what_was_read():
    seen = []

    class Recorder:
        def update(self, done):
            seen.append(done)

    reader = progress.CountingReader(io.BytesIO(b"x" * 10), Recorder())
    buffer = bytearray(4)
    assert [reader.readinto(buffer) for _ in range(4)] == [4, 4, 2, 0]
    assert seen == [4, 8, 10, 10]


def test_step_progress_counts_steps():
    clock, out = Clock(), io.StringIO()
    steps = progress.StepProgress(out, 3, clock=clock)
    clock.now += 1.25
    steps("PC1 tree-d")
    clock.now += 10
    steps("PC1 labels")
    assert out.getvalue().splitlines() == ["[   1.2s] [####........] 1/3 PC1 tree-d",
                                           "[  11.2s] [########....] 2/3 PC1 labels"]
    quiet = progress.StepProgress(None, 3, clock=clock)
    quiet("nothing shown")
    assert quiet.done == 1


def test_shown_on_a_terminal_or_when_asked():
    assert progress.wanted(None, Tty()) is True
    assert progress.wanted(None, io.StringIO()) is False
    assert progress.wanted(True, io.StringIO()) is True
    assert progress.wanted(False, Tty()) is False
