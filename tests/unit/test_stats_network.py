"""Pod network counters: /proc/net/dev parsing, and reading a namespace's counters."""

from __future__ import annotations

import os

import pytest

from shim.stats import network

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456     100    2    0    0     0          0         0    65432      50    1    0    0     0       0          0
"""  # noqa: E501


def test_parse_net_dev() -> None:
    ifaces = network.parse_net_dev(NET_DEV)
    assert [i.name for i in ifaces] == ["lo", "eth0"]
    eth0 = ifaces[1]
    assert (eth0.rx_bytes, eth0.rx_errors, eth0.tx_bytes, eth0.tx_errors) == (123456, 2, 65432, 1)


def test_parse_net_dev_skips_garbage() -> None:
    assert network.parse_net_dev("eth0: 1 2 3\nno colon here\n") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root")
def test_read_netns_of_own_namespace() -> None:
    # Our own namespace (the test's private one): loopback is left out of the answer.
    ifaces = network.read_netns("/proc/self/ns/net")
    assert all(i.name != "lo" for i in ifaces)
