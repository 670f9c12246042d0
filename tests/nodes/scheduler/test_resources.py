"""Lotus's resource table, env/config overrides, and their errors."""
import pytest

from zqnode.nodes.scheduler import (DEFAULT_TABLE, ResourceEnvError, Resources, parse_resource_env,
                                    resource_env_from_config)
from zqnode.nodes.wire.tasks import LOTUS_NAMES, ORDER, SECTOR_SIZES

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
G32, G64, M512, K2, M8 = 32 * GiB, 64 * GiB, 512 * MiB, 2 * KiB, 8 * MiB


def test_task_types_order_and_names_match_lotus():
    assert ORDER == {"GSK": 11, "DC": 10, "AP": 9, "RU": 8, "PR2": 7, "PR1": 6, "PC1": 5,
                     "PC2": 4, "C2": 3, "C1": 2, "UNS": 1, "FRU": 0, "GET": -1, "DL": -2,
                     "FIN": -3, "FUS": -4, "WDP": -5, "WNP": -6}
    assert LOTUS_NAMES["PC1"] == "seal/v0/precommit/1"
    assert LOTUS_NAMES["WNP"] == "post/v0/winningproof"
    assert list(SECTOR_SIZES.values()) == ["2K", "8M", "512M", "32G", "64G"]


@pytest.mark.parametrize("task,size,expected", [
    ("PC1", G32, Resources(min_memory=56 * GiB, max_memory=64 * GiB, max_parallelism=1,
                           base_min_memory=10 * MiB)),
    ("PC1", G64, Resources(min_memory=112 * GiB, max_memory=128 * GiB, max_parallelism=1,
                           base_min_memory=10 * MiB)),
    ("PC1", M512, Resources(min_memory=768 * MiB, max_memory=GiB, max_parallelism=1,
                            base_min_memory=MiB)),
    ("PC2", G32, Resources(min_memory=15 * GiB, max_memory=15 * GiB, gpu_utilization=1.0,
                           max_parallelism=-1, max_parallelism_gpu=6, base_min_memory=GiB)),
    ("PC2", M512, Resources(min_memory=GiB, max_memory=3 * GiB // 2, max_parallelism=-1,
                            base_min_memory=GiB)),
    ("C1", G32, Resources(min_memory=GiB, max_memory=GiB, base_min_memory=GiB)),
    ("C2", G32, Resources(min_memory=30 * GiB, max_memory=150 * GiB, gpu_utilization=1.0,
                          max_parallelism=-1, max_parallelism_gpu=6, base_min_memory=32 * GiB)),
    ("C2", G64, Resources(min_memory=60 * GiB, max_memory=190 * GiB, gpu_utilization=1.0,
                          max_parallelism=-1, max_parallelism_gpu=6, base_min_memory=64 * GiB)),
    ("AP", G32, Resources(min_memory=4 * GiB, max_memory=4 * GiB, max_parallelism=1,
                          base_min_memory=GiB)),
    ("AP", K2, Resources(min_memory=2 * KiB, max_memory=2 * KiB, max_parallelism=1,
                         base_min_memory=2 * KiB)),
    ("GET", G32, Resources(min_memory=MiB, max_memory=MiB)),
    ("RU", G32, Resources(min_memory=4 * GiB, max_memory=4 * GiB, gpu_utilization=1.0,
                          max_parallelism=1, max_parallelism_gpu=6, base_min_memory=GiB)),
    ("WDP", G32, Resources(min_memory=30 * GiB, max_memory=96 * GiB, gpu_utilization=1.0,
                           max_parallelism=-1, max_parallelism_gpu=6, base_min_memory=32 * GiB)),
    ("WNP", M512, Resources(min_memory=2 * KiB, max_memory=2 * KiB, gpu_utilization=1.0,
                            max_parallelism=1, base_min_memory=10 * GiB)),
    ("C2", M8, Resources(min_memory=8 * MiB, max_memory=8 * MiB, gpu_utilization=1.0,
                         max_parallelism=1, base_min_memory=8 * MiB)),
    ("FIN", G32, Resources()),
])
def test_default_table_matches_lotus(task, size, expected):
    assert DEFAULT_TABLE[(task, size)] == expected


def test_aliases_in_the_default_table():
    for size in SECTOR_SIZES:
        assert DEFAULT_TABLE[("UNS", size)] == DEFAULT_TABLE[("PC1", size)]
        assert DEFAULT_TABLE[("GSK", size)] == DEFAULT_TABLE[("RU", size)]
        assert DEFAULT_TABLE[("PR1", size)] == DEFAULT_TABLE[("C1", size)]
        assert DEFAULT_TABLE[("PR2", size)] == DEFAULT_TABLE[("C2", size)]
        assert DEFAULT_TABLE[("DC", size)] == DEFAULT_TABLE[("AP", G32)]  # not sector sized


@pytest.mark.parametrize("cpus,gpus,res,threads", [
    (12, 0, Resources(max_parallelism=-1), 11),  # 92% of the CPUs, as Lotus's table says
    (16, 0, Resources(max_parallelism=-1), 14),
    (128, 0, Resources(max_parallelism=-1), 117),
    (1, 0, Resources(max_parallelism=-1), 1),  # 92% of 1 rounds to 0: all of it
    (64, 1, Resources(max_parallelism=-1, max_parallelism_gpu=6, gpu_utilization=1.0), 6),
    (64, 0, Resources(max_parallelism=-1, max_parallelism_gpu=6, gpu_utilization=1.0), 58),
    (64, 1, Resources(max_parallelism=1, gpu_utilization=1.0), 1),  # GPU value 0: inherit
    (64, 1, Resources(max_parallelism=0), 0),
])
def test_threads(cpus, gpus, res, threads):
    assert res.threads(cpus, gpus) == threads


def test_env_overrides_sized_beats_unsized_and_defaults_stay():
    table = parse_resource_env({"PC1_32G_MAX_CONCURRENT": "4", "PC1_MAX_CONCURRENT": "2",
                                "PC2_2K_GPU_UTILIZATION": "0.4", "PC2_2K_MAX_MEMORY": "2222",
                                "UNS_MAX_PARALLELISM": "2", "HOME": "/root"})
    assert table[("PC1", G32)].max_concurrent == 4
    assert table[("PC1", G64)].max_concurrent == 2
    assert table[("PC1", K2)].max_concurrent == 2
    assert table[("PC2", K2)].gpu_utilization == 0.4
    assert table[("PC2", K2)].max_memory == 2222
    assert table[("PC2", M8)] == DEFAULT_TABLE[("PC2", M8)]
    assert {table[("UNS", s)].max_parallelism for s in SECTOR_SIZES} == {2}
    assert table[("PC1", G32)].max_parallelism == 1  # no SDR variables: 1 thread
    assert DEFAULT_TABLE[("PC1", G32)].max_concurrent == 0  # defaults untouched


def test_env_multicore_sdr_threads_for_pc1_and_unseal():
    table = parse_resource_env({"FIL_PROOFS_USE_MULTICORE_SDR": "1"})
    assert table[("PC1", K2)].max_parallelism == 4
    assert table[("UNS", G32)].max_parallelism == 4
    table = parse_resource_env({"FIL_PROOFS_USE_MULTICORE_SDR": "1",
                                "FIL_PROOFS_MULTICORE_SDR_PRODUCERS": "9000",
                                "PC1_64G_MAX_PARALLELISM": "7"})
    assert table[("PC1", K2)].max_parallelism == 9001
    assert table[("PC1", G64)].max_parallelism == 7  # an explicit override wins
    assert table[("AP", G32)].max_parallelism == 1


def test_env_overrides_apply_on_a_given_base():
    base = parse_resource_env({"C2_MAX_CONCURRENT": "1"})
    table = parse_resource_env({"C2_32G_MIN_MEMORY": "1"}, base=base)
    assert table[("C2", G32)].max_concurrent == 1
    assert table[("C2", G32)].min_memory == 1
    assert base[("C2", G32)].min_memory == 30 * GiB


@pytest.mark.parametrize("env,message", [
    ({"PC1_32G_MAX_CONCURRENT": "four"}, "PC1_32G_MAX_CONCURRENT='four'"),
    ({"PC1_32G_MAX_CONCURRENT": "-1"}, "PC1_32G_MAX_CONCURRENT='-1'"),
    ({"PC1_MAX_CONCURRENT": "1.5"}, "PC1_MAX_CONCURRENT='1.5'"),
    ({"C2_32G_MIN_MEMORY": "30GiB"}, "C2_32G_MIN_MEMORY='30GiB'"),
    ({"C2_MAX_MEMORY": ""}, "C2_MAX_MEMORY=''"),
    ({"PC2_MAX_PARALLELISM": "-2"}, "PC2_MAX_PARALLELISM='-2'"),
    ({"PC2_GPU_UTILIZATION": "lots"}, "PC2_GPU_UTILIZATION='lots'"),
    ({"PC2_GPU_UTILIZATION": "nan"}, "PC2_GPU_UTILIZATION='nan'"),
    ({"PC1_16G_MAX_CONCURRENT": "1"}, "PC1_16G_MAX_CONCURRENT: unknown sector size '16G'"),
    ({"FIL_PROOFS_USE_MULTICORE_SDR": "1", "FIL_PROOFS_MULTICORE_SDR_PRODUCERS": "x"},
     "FIL_PROOFS_MULTICORE_SDR_PRODUCERS='x'"),
])
def test_env_value_that_does_not_parse_names_the_variable(env, message):
    with pytest.raises(ResourceEnvError) as err:
        parse_resource_env(env)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_strict_names_for_config():
    assert parse_resource_env({"HOME": "/"}) is not None  # env: other names are ignored
    with pytest.raises(ResourceEnvError, match="HOME: not a resource override name"):
        parse_resource_env({"HOME": "/"}, strict=True)
    with pytest.raises(ResourceEnvError, match="unknown task type 'XX'"):
        parse_resource_env({"XX_MAX_MEMORY": "1"}, strict=True)


def test_config_mapping_to_env_names():
    env = resource_env_from_config({"PC1": {"32G": {"max_concurrent": 4}, "MAX_MEMORY": 7},
                                    "FIN": {"max_concurrent": 2}})
    assert env == {"PC1_32G_MAX_CONCURRENT": 4, "PC1_MAX_MEMORY": 7, "FIN_MAX_CONCURRENT": 2}
    table = parse_resource_env(env, strict=True)
    assert table[("PC1", G32)].max_concurrent == 4
    assert table[("PC1", G32)].max_memory == 7
    assert table[("FIN", G64)].max_concurrent == 2


@pytest.mark.parametrize("config,message", [
    ({"PCX": {"max_memory": 1}}, "PCX: unknown task type"),
    ({"PC1": {"32G": {"max_mem": 1}}}, "PC1.32G.max_mem: unknown resource field"),
    ({"PC1": {"16G": {"max_memory": 1}}}, "PC1.16G: unknown sector size"),
    ({"PC1": 4}, "PC1: expected a mapping"),
])
def test_config_mapping_errors(config, message):
    with pytest.raises(ResourceEnvError, match=message.replace(".", r"\.")):
        resource_env_from_config(config)


def test_config_value_errors_name_the_entry():
    env = resource_env_from_config({"PC1": {"32G": {"max_concurrent": "many"}}})
    with pytest.raises(ResourceEnvError, match="PC1_32G_MAX_CONCURRENT='many'"):
        parse_resource_env(env, strict=True)
    with pytest.raises(ResourceEnvError, match="got a boolean"):
        parse_resource_env({"PC1_MAX_CONCURRENT": True})
