"""`/metrics` in Prometheus text format: requests, upstream timings, streams, lookups, attribution."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from portkey_user_proxy.dialects.usage import Usage
from portkey_user_proxy.observability.metrics import Metrics
from tests.support.proxy import MakeProxy, RunningProxy, scrape
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"


def chat(proxy: RunningProxy, **body: object) -> httpx.Response:
    return httpx.post(proxy.url + "/v1/chat/completions", json={"user": USER_ID, "messages": [], **body})


def test_requests_lookups_and_attributions_are_counted(proxy: RunningProxy, upstream: Upstream) -> None:
    chat(proxy)
    chat(proxy)
    httpx.get(proxy.url + "/status/429")

    samples = scrape(proxy)
    prefix = "portkey_user_proxy_"
    assert samples[(prefix + "requests_total", (("route", "chat_completions"), ("status", "200")))] == 2
    assert samples[(prefix + "requests_total", (("route", "other"), ("status", "429")))] == 1
    assert samples[(prefix + "user_lookups_total", (("outcome", "miss"),))] == 1
    assert samples[(prefix + "user_lookups_total", (("outcome", "cache_hit"),))] == 1
    assert samples[(prefix + "attributions_total", (("outcome", "resolved"), ("reason", "found")))] == 1
    assert samples[(prefix + "attributions_total", (("outcome", "resolved"), ("reason", "cache_hit")))] == 1
    assert samples[(prefix + "attributions_total", (("outcome", "fallback"), ("reason", "no_identity")))] == 1
    assert samples[(prefix + "mongodb_up", ())] == 1
    assert samples[(prefix + "overhead_seconds_count", (("route", "chat_completions"),))] == 2
    assert samples[(prefix + "user_lookup_duration_seconds_count", ())] == 1
    assert samples[(prefix + "upstream_duration_seconds_count", (("route", "chat_completions"),))] == 2
    assert samples[(prefix + "upstream_first_byte_seconds_count", (("route", "chat_completions"),))] == 2
    assert samples[(prefix + "open_streams", ())] == 0


def test_open_streams_are_gauged_while_they_stream(proxy: RunningProxy, upstream: Upstream) -> None:
    with httpx.stream("POST", proxy.url + "/gated-stream", json={"user": USER_ID}, timeout=5) as response:
        lines = response.iter_lines()  # kept: a dropped iterator would close the stream early
        assert next(lines)
        assert scrape(proxy)[("portkey_user_proxy_open_streams", ())] == 1
        for gate in upstream.gates:
            gate.set()
        assert [line for line in lines if line][-1] == "data: [DONE]"

    assert scrape(proxy)[("portkey_user_proxy_open_streams", ())] == 0


def test_per_user_tokens_are_off_by_default(proxy: RunningProxy, upstream: Upstream) -> None:
    chat(proxy)

    assert not [name for name, _ in scrape(proxy) if name.startswith("portkey_user_proxy_user_tokens")]


def test_per_user_tokens_count_json_and_streamed_usage(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(metrics_per_user_tokens=True)

    chat(proxy)  # usage {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json={"user": USER_ID, "stream": True}) as stream:
        stream.read()  # final usage chunk: {"total_tokens": 6}

    samples = scrape(proxy)
    tokens = "portkey_user_proxy_user_tokens_total"
    assert samples[(tokens, (("kind", "total"), ("user", EMAIL)))] == 12
    assert samples[(tokens, (("kind", "prompt"), ("user", EMAIL)))] == 5
    assert samples[(tokens, (("kind", "completion"), ("user", EMAIL)))] == 1


def test_errors_the_proxy_makes_are_counted_by_code(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(portkey_url="http://127.0.0.1:9")  # nothing listens on the discard port
    assert chat(proxy).status_code == 502

    samples = scrape(proxy)
    key = ("portkey_user_proxy_errors_total", (("code", "upstream_unreachable"), ("route", "chat_completions")))
    assert samples[key] == 1


def test_per_user_tokens_count_resolved_users_only(make_proxy: MakeProxy, upstream: Upstream) -> None:
    proxy = make_proxy(metrics_per_user_tokens=True)

    for user in ("\ud800", "ceo@corp.example", "ffffffffffffffffffffffff", "x" * 100_000):
        body = json.dumps({"user": user, "messages": []}).encode()  # JSON's \ud800 escape: a lone surrogate
        headers = {"content-type": "application/json"}
        assert httpx.post(proxy.url + "/v1/chat/completions", content=body, headers=headers).status_code == 200
    chat(proxy)

    users = {dict(labels)["user"] for name, labels in scrape(proxy) if name == "portkey_user_proxy_user_tokens_total"}
    assert users == {EMAIL}  # and the scrape still answers 200 after a lone surrogate went by


def test_user_labels_are_valid_utf8_and_bounded_whatever_the_value() -> None:
    metrics = Metrics(per_user_tokens=True)
    usage = Usage(total=3)

    for user in ("\ud800", "a\udfffb", "é" * 10_000, "plain@example.com"):
        metrics.usage(user, usage)

    exposition = metrics.exposition().decode("utf-8")
    users = [
        sample.labels["user"]
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "portkey_user_proxy_user_tokens_total"
    ]
    assert len(users) == 4
    assert all(len(user) <= 128 for user in users)
    assert "plain@example.com" in users
