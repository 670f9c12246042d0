"""Lotus's CanHandleRequest and utilization, on one Usage."""
from zqnode.nodes.scheduler import Resources, WorkerResources
from zqnode.nodes.scheduler.usage import Usage, can_handle, utilization

GiB = 1 << 30
KEY = ("PC1", 32 * GiB)


def host(cpus=16, mem=100, used=0, swap=0, swap_used=0, gpus=0):
    return WorkerResources(cpus=cpus, mem_physical=mem * GiB, mem_used=used * GiB,
                           mem_swap=swap * GiB, mem_swap_used=swap_used * GiB,
                           gpus=tuple(f"g{i}" for i in range(gpus)))


def need(mn=0, mx=0, base=0, mp=0, gpu=0.0, mpg=0, mc=0):
    return Resources(min_memory=mn * GiB, max_memory=mx * GiB, base_min_memory=base * GiB,
                     max_parallelism=mp, gpu_utilization=gpu, max_parallelism_gpu=mpg,
                     max_concurrent=mc)


def used(mn=0, mx=0, cpu=0, gpu=0.0):
    u = Usage()
    u.mem_min, u.mem_max, u.cpu, u.gpu = mn * GiB, mx * GiB, cpu, gpu
    return u


def fits(u, n, r, rid=None, ignore=False):
    return can_handle(u, n, r, KEY, rid, ignore)


def test_min_memory_plus_base_against_physical_minus_reserved_min():
    r = host(mem=100)
    assert fits(used(mn=40), need(mn=50, base=10), r)  # 50 + 10 <= 100 - 40
    assert not fits(used(mn=41), need(mn=50, base=10), r)
    # what the host itself uses is assumed swappable: it only counts for virtual memory
    busy = host(mem=100, used=90, swap=100)
    assert fits(used(mn=40), need(mn=50, base=10), busy)


def test_virtual_memory_uses_the_larger_of_reserved_max_and_host_use():
    # physical + swap - max(used-max, mem_used + swap_used) >= max memory + base
    r = host(mem=100, swap=20, used=30, swap_used=10)  # host uses 40
    assert fits(used(mx=0), need(mx=70, base=10), r)  # 120 - 40 = 80
    assert not fits(used(mx=0), need(mx=71, base=10), r)
    assert fits(used(mx=40), need(mx=70, base=10), r)  # reserved 40 = host's 40
    assert not fits(used(mx=41), need(mx=70, base=10), r)  # reserved beats host use


def test_threads_and_ninety_two_percent():
    r = host(cpus=16)
    assert fits(used(cpu=2), need(mp=-1), r)  # 14 + 2 = 16
    assert not fits(used(cpu=3), need(mp=-1), r)
    assert fits(used(cpu=15), need(mp=1), r)
    assert not fits(used(cpu=16), need(mp=1), r)
    assert fits(used(cpu=16), need(mp=0), r)


def test_gpu_utilization_against_the_gpu_count():
    assert fits(used(gpu=1.0), need(gpu=1.0, mp=1), host(gpus=2))
    assert not fits(used(gpu=2.0), need(gpu=1.0, mp=1), host(gpus=2))
    assert not fits(used(gpu=1.5), need(gpu=0.6, mp=1), host(gpus=2))
    # no GPU on the host: Lotus runs GPU tasks on the CPU, so no GPU limit applies
    assert fits(used(gpu=5.0), need(gpu=1.0, mp=1), host(gpus=0))
    # with a GPU the task takes MaxParallelismGPU threads instead of all of them
    assert fits(used(cpu=10), need(gpu=1.0, mp=-1, mpg=6), host(cpus=16, gpus=1))
    assert not fits(used(cpu=10), need(gpu=1.0, mp=-1, mpg=6), host(cpus=16, gpus=0))


def test_max_concurrent_counts_other_requests_only():
    u = Usage()
    n = need(mc=2)
    u.add(KEY, "a", n, 0)
    u.add(KEY, "b", n, 0)
    assert not fits(u, n, host())
    assert not fits(u, n, host(), rid="c")
    assert fits(u, n, host(), rid="a")  # already counted: does not block itself
    assert not fits(u, n, host(), ignore=True)  # limits apply even ignoring resources
    u.free(KEY, "b", n, 0)
    assert fits(u, n, host())
    assert u.counters == {KEY: {"a": 1}}


def test_ignore_resources_skips_everything_but_limits():
    assert fits(used(mn=1000), need(mn=50), host(mem=1), ignore=True)


def test_add_free_round_trip():
    u = Usage()
    n = need(mn=5, mx=7, gpu=0.5, mp=3)
    u.add(KEY, "a", n, 3)
    assert (u.mem_min, u.mem_max, u.cpu, u.gpu) == (5 * GiB, 7 * GiB, 3, 0.5)
    u.free(KEY, "a", n, 3)
    assert (u.mem_min, u.mem_max, u.cpu, u.gpu, u.counters) == (0, 0, 0, 0.0, {})


def test_utilization_is_the_largest_ratio():
    r = host(cpus=16, mem=100, swap=100, used=10, gpus=2)
    assert utilization(used(cpu=4), r) == 0.25
    assert utilization(used(mn=50), r) == 0.5
    assert utilization(used(), r) == 0.1  # host use counts as RAM in use
    assert utilization(used(mx=180), r) == 0.9  # (RAM + swap) in use
    assert utilization(used(gpu=1.5), r) == 0.75
