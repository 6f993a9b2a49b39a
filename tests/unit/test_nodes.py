"""The transport's pure policy: which node to ask, failover, fail-back, waits between attempts; the node list in
``FIELDSYNC_COUCH_URL``. No network."""

from __future__ import annotations

import pytest

from workers.errors import ConfigError
from workers.nodes import NodeList, RetryPolicy, Switch, is_unsupported
from workers.settings import Settings

N = ("http://n1:5984", "http://n2:5984", "http://n3:5984")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def nodes(home: int = 0, failback_after: float = 30.0) -> tuple[NodeList, Clock]:
    clock = Clock()
    return NodeList(N, home=home, failback_after=failback_after, clock=clock), clock


def test_home_is_asked_first_and_wraps_around() -> None:
    assert nodes(0)[0].current() == 0
    assert nodes(2)[0].current() == 2
    assert nodes(4)[0].current() == 1  # shard 4 of many, on 3 nodes
    assert NodeList(["http://only:1/"]).home_url == "http://only:1"


def test_failover_goes_to_the_next_node_that_is_up() -> None:
    ring, _ = nodes(home=1)
    assert ring.failed(1) == (2, Switch("failover", N[1], N[2]))
    assert ring.current() == 2
    assert ring.failed(2) == (0, Switch("failover", N[2], N[0]))  # node 1 is down: skipped
    assert ring.current() == 0
    assert ring.down() == [1, 2]


def test_every_node_down_goes_to_the_one_that_failed_longest_ago() -> None:
    ring, clock = nodes(failback_after=1000)
    ring.failed(0)
    clock.now += 1
    ring.failed(1)
    clock.now += 1
    assert ring.failed(2) == (0, Switch("failover", N[2], N[0]))


def test_a_failure_seen_late_by_another_thread_does_not_move_again() -> None:
    ring, _ = nodes()
    ring.failed(0)
    assert ring.failed(0) == (1, None)  # this thread asked node 0 before the switch
    assert ring.current() == 1


def test_within_one_request_a_failover_is_not_undone_by_fail_back() -> None:
    ring, _ = nodes(home=0, failback_after=0)
    assert ring.failed(0)[0] == 1  # the request's next attempt goes to node 1...
    assert ring.current() == 0  # ...while the next request tries home again at once


def test_fail_back_to_home_after_the_delay_and_only_then() -> None:
    ring, clock = nodes(home=0, failback_after=30)
    ring.failed(0)
    clock.now += 29
    assert ring.current() == 1
    assert ring.succeeded(1) is None  # not a node that was down
    clock.now += 1
    assert ring.current() == 0  # tried again
    assert ring.succeeded(0) == Switch("failback", N[0], N[0])
    assert ring.down() == []


def test_home_still_down_after_the_delay_fails_over_again() -> None:
    ring, clock = nodes(home=0, failback_after=5)
    ring.failed(0)
    clock.now += 6
    assert ring.current() == 0
    assert ring.failed(0) == (1, Switch("failover", N[0], N[1]))
    clock.now += 4
    assert ring.current() == 1  # the new mark counts from the second failure


def test_a_single_node_never_switches() -> None:
    ring = NodeList([N[0]])
    assert ring.failed(0) == (0, None)
    assert ring.current() == 0
    assert ring.succeeded(0) is None


def test_policy_fails_over_at_once_and_backs_off_per_round() -> None:
    policy = RetryPolicy(retries=5, backoff=0.25)
    assert policy.attempts() == 6 and policy.attempts(3) == 18  # rounds over the nodes
    assert policy.attempts(3, retries=0) == 3  # "no retry" still asks each node once
    assert [policy.wait(k, 3) for k in range(1, 7)] == [0, 0, 0.25, 0, 0, 0.5]
    assert [policy.wait(k, 1) for k in range(1, 5)] == [0.25, 0.5, 1.0, 2.0]  # one node: plain backoff


def test_only_a_missing_endpoint_turns_a_feature_off() -> None:
    assert all(is_unsupported(s) for s in (400, 404, 501))
    assert not any(is_unsupported(s) for s in (500, 502, 503, 504, 429, 401, 403, None))


def test_url_may_name_several_nodes_with_credentials_once() -> None:
    s = Settings.from_env({"FIELDSYNC_COUCH_URL": "http://ad:pw@n1:5984,http://n2:5984/,http://ad:pw@n3:5984",
                           "FIELDSYNC_WORKER_SHARD": "2/3"})
    assert s.couch_url == "http://n1:5984" and s.couch_nodes == ["http://n1:5984", "http://n2:5984", "http://n3:5984"]
    assert s.credentials == ("ad", "pw")
    assert s.home_node == "http://n3:5984"
    assert s.env_url() == "http://ad:pw@n1:5984,http://n2:5984,http://n3:5984"
    assert s.admin_url() == "http://ad:pw@n1:5984"
    assert Settings.from_env({"FIELDSYNC_COUCH_URL": s.env_url()}).couch_nodes == s.couch_nodes
    one = Settings.from_env({"FIELDSYNC_COUCH_URL": "http://ad:pw@n1:5984"})
    assert one.couch_nodes == ["http://n1:5984"] and one.env_url() == "http://ad:pw@n1:5984"


@pytest.mark.parametrize("url, problem", [
    ("http://a:b@n1:5984,http://c:d@n2:5984", "different credentials"),
    ("http://n1:5984,,http://n2:5984", "empty node"),
    ("http://n1:5984,http://n1:5984", "names a node twice"),
    ("http://n1:5984,ftp://n2", "http(s) URL"),
    ("http://n1:5984,http://n2:99999", "Port out of range"),
])
def test_a_bad_node_list_is_refused_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="FIELDSYNC_COUCH_URL") as caught:
        Settings.from_env({"FIELDSYNC_COUCH_URL": url})
    assert problem in str(caught.value)
    assert "b@" not in str(caught.value) and ":d" not in str(caught.value)
