"""CRI metrics: descriptors and the pure parsers behind them."""

from __future__ import annotations

from shim.stats import metrics
from shim.stats.network import parse_net_dev


def test_descriptors_are_unique_and_labelled() -> None:
    names = [d.name for d in metrics.DESCRIPTORS]
    assert len(names) == len(set(names))
    for d in metrics.DESCRIPTORS:
        assert d.help and d.label_keys[:3] == ("id", "name", "image")
        assert d.kind in (metrics.COUNTER, metrics.GAUGE)
        # cAdvisor's counters end in _total, but for failcnt; and one gauge does too
        odd = d.name in ("container_memory_failcnt", "container_fs_inodes_total")
        assert (d.kind == metrics.COUNTER) == (d.name.endswith("_total") != odd)


def test_cpu_parsers() -> None:
    assert metrics.cpu_times_v1("user 150\nsystem 50\n") == (1_500_000_000, 500_000_000)
    assert metrics.cfs_v1("nr_periods 7\nnr_throttled 2\nthrottled_time 9000\n") == (7, 2, 9000)
    v2 = metrics.cpu_v2("usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\n"
                        "nr_throttled 1\nthrottled_usec 5\n")
    assert v2 == {"user": 6000, "system": 4000, "periods": 3, "throttled": 1,
                  "throttled_ns": 5000}


def test_block_io_parsers() -> None:
    v1 = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Total 4608\nTotal 4608\n"
    assert metrics.blkio_v1(v1) == [(8, 0, "Read", 4096), (8, 0, "Write", 512), (8, 0, "Sync", 1),
                                    (8, 0, "Total", 4608)]
    v2 = "254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
    assert metrics.io_stat_v2(v2) == [(254, 0, "Read", 100), (254, 0, "Write", 200)]


def test_net_dev_packets_and_drops() -> None:
    text = ("Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed "
            "multicast|bytes packets errs drop fifo colls carrier compressed\n"
            "  eth0: 100 2 3 4 0 0 0 0 500 6 7 8 0 0 0 0\n")
    (i,) = parse_net_dev(text)
    assert (i.rx_bytes, i.rx_packets, i.rx_errors, i.rx_dropped) == (100, 2, 3, 4)
    assert (i.tx_bytes, i.tx_packets, i.tx_errors, i.tx_dropped) == (500, 6, 7, 8)
