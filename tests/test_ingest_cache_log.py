"""Job logs → Cache events: actions/cache restores and BuildKit (``--progress=plain``) layer-cache use."""

from __future__ import annotations

from shipscope.events import Cache
from shipscope.ingest.cache_log import SOURCE, parse_cache_log


def dependency(key: str, hit: bool, size: int | None = None) -> Cache:
    return Cache(source=SOURCE, kind="dependency", key=key, hit=hit, bytes=size)


def layer(instruction: str, hit: bool, seconds: float | None = None) -> Cache:
    return Cache(source=SOURCE, kind="docker-layer", key=instruction, hit=hit, seconds=seconds)


# A GitHub Actions job log as downloaded: a pip cache hit, an npm cache miss, and the post-job save of the npm
# cache, whose size line must not be taken for a restore's.
ACTIONS_CACHE_JOB_LOG = """\
2024-05-01T10:00:00.0000000Z ##[group]Run actions/cache@v4
2024-05-01T10:00:00.0000010Z with:
2024-05-01T10:00:00.0000020Z   path: ~/.cache/pip
2024-05-01T10:00:00.0000030Z   key: Linux-pip-3f2a9c0d
2024-05-01T10:00:00.0000040Z   restore-keys: Linux-pip-
2024-05-01T10:00:00.0000050Z   enableCrossOsArchive: false
2024-05-01T10:00:00.0000060Z   fail-on-cache-miss: false
2024-05-01T10:00:00.0000070Z   lookup-only: false
2024-05-01T10:00:00.0000080Z ##[endgroup]
2024-05-01T10:00:01.1234567Z Received 128974848 of 128974848 (100.0%), 61.3 MBs/sec
2024-05-01T10:00:01.1334567Z Cache Size: ~123 MB (128974848 B)
2024-05-01T10:00:01.1434567Z [command]/usr/bin/tar -xf /home/runner/work/_temp/5e0c/cache.tzst -P \
-C /home/runner/work/app/app --use-compress-program unzstd
2024-05-01T10:00:03.2034567Z Cache restored successfully
2024-05-01T10:00:03.2134567Z Cache restored from key: Linux-pip-3f2a9c0d
2024-05-01T10:00:03.3000000Z ##[group]Run actions/cache@v4
2024-05-01T10:00:03.3000010Z with:
2024-05-01T10:00:03.3000020Z   path: ~/.npm
2024-05-01T10:00:03.3000030Z   key: Linux-node-9be1e0aa
2024-05-01T10:00:03.3000040Z   restore-keys: Linux-node-
2024-05-01T10:00:03.3000050Z ##[endgroup]
2024-05-01T10:00:03.6000000Z Cache not found for input keys: Linux-node-9be1e0aa, Linux-node-
2024-05-01T10:00:03.7000000Z ##[group]Run npm ci
2024-05-01T10:00:03.7000010Z npm ci
2024-05-01T10:00:03.7000020Z ##[endgroup]
2024-05-01T10:00:41.0000000Z added 812 packages, and audited 813 packages in 37s
2024-05-01T10:01:10.0000000Z Post job cleanup.
2024-05-01T10:01:10.1000000Z [command]/usr/bin/tar --posix -cf cache.tzst --exclude cache.tzst -P \
-C /home/runner/work/app/app --files-from manifest.txt --use-compress-program zstdmt
2024-05-01T10:01:12.0000000Z Cache Size: ~45 MB (47185920 B)
2024-05-01T10:01:14.0000000Z Cache saved successfully
2024-05-01T10:01:14.0100000Z Cache saved with key: Linux-node-9be1e0aa
"""


def test_actions_cache_hit_with_size_and_miss_with_first_key() -> None:
    caches = parse_cache_log(ACTIONS_CACHE_JOB_LOG.splitlines())

    assert caches == [
        dependency("Linux-pip-3f2a9c0d", hit=True, size=128974848),
        dependency("Linux-node-9be1e0aa", hit=False),
    ]


def test_size_line_after_the_restore_belongs_to_it() -> None:
    log = """\
##[group]Run actions/cache/restore@v4
##[endgroup]
Cache restored from key: macOS-gradle-7c1d
Cache Size: ~1 MB (1048576 B)
Cache restored successfully
##[group]Run ./gradlew build
"""

    assert parse_cache_log(log.splitlines()) == [dependency("macOS-gradle-7c1d", hit=True, size=1048576)]


def test_a_size_reported_in_a_later_step_is_not_the_restores() -> None:
    log = """\
2024-05-01T10:00:03.2134567Z Cache restored from key: Linux-cargo-ab12
2024-05-01T10:00:04.0000000Z ##[group]Run cargo build --locked
2024-05-01T10:00:04.0000010Z ##[endgroup]
2024-05-01T10:00:09.0000000Z Cache Size: ~2 MB (2097152 B)
2024-05-01T10:00:10.0000000Z Cache restored from key: Linux-cargo-registry-ff00
"""

    # The stray size has no restore of its own yet, so it goes to the next one.
    assert parse_cache_log(log.splitlines()) == [
        dependency("Linux-cargo-ab12", hit=True),
        dependency("Linux-cargo-registry-ff00", hit=True, size=2097152),
    ]


def test_lines_that_decide_nothing_are_ignored() -> None:
    log = """\
Cache restored successfully
Cache found and can be restored from key: Linux-pip-3f2a9c0d
Cache hit occurred on the primary key Linux-pip-3f2a9c0d, not saving cache.
Cache saved with key: Linux-pip-3f2a9c0d
Received 1024 of 1024 (100.0%), 0.0 MBs/sec
"""

    assert parse_cache_log(log.splitlines()) == []


def test_prefixes_and_colour_codes_are_tolerated() -> None:
    log = [
        "2024-05-01T10:00:00.1234567Z ##[group]Cache not found for input keys: Windows-nuget-77aa\r\n",
        "\x1b[36;1mCache Size: ~0 MB (41234 B)\x1b[0m",
        "2024-05-01T10:00:02+00:00 Cache restored from key: Windows-nuget-",
    ]

    assert parse_cache_log(log) == [
        dependency("Windows-nuget-77aa", hit=False),
        dependency("Windows-nuget-", hit=True, size=41234),
    ]


# `docker buildx build --progress=plain .` with two layers cached and three rebuilt.
BUILDKIT_LOG = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 412B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/python:3.12-slim
#2 DONE 0.9s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 [1/6] FROM docker.io/library/python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8
#4 resolve docker.io/library/python:3.12-slim@sha256:2b0079146a74e23bf4ae8f6a28e1b484c6292f6fb904cbb51825b4a19812fcd8 \
0.0s done
#4 DONE 0.0s

#5 [internal] load build context
#5 transferring context: 48.21kB 0.0s done
#5 DONE 0.0s

#6 [2/6] WORKDIR /app
#6 CACHED

#7 [3/6] COPY requirements.txt .
#7 CACHED

#8 [4/6] RUN pip install --no-cache-dir -r requirements.txt
#8 0.734 Collecting flask==3.0.3 (from -r requirements.txt (line 1))
#8 1.102   Downloading flask-3.0.3-py3-none-any.whl.metadata (3.2 kB)
#8 11.870 Successfully installed blinker-1.8.2 click-8.1.7 flask-3.0.3
#8 DONE 12.3s

#9 [5/6] COPY . .
#9 DONE 0.1s

#10 [6/6] RUN python -m compileall -q .
#10 DONE 0.6s

#11 exporting to image
#11 exporting layers
#11 exporting layers 0.4s done
#11 writing image sha256:6c3b5c0a1e7f1f0b8b5d1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a done
#11 naming to docker.io/library/app:latest done
#11 DONE 0.4s
"""


def test_buildkit_cached_steps_are_hits_and_done_steps_are_timed_misses() -> None:
    caches = parse_cache_log(BUILDKIT_LOG.splitlines())

    assert caches == [
        layer("WORKDIR /app", hit=True),
        layer("COPY requirements.txt .", hit=True),
        layer("RUN pip install --no-cache-dir -r requirements.txt", hit=False, seconds=12.3),
        layer("COPY . .", hit=False, seconds=0.1),
        layer("RUN python -m compileall -q .", hit=False, seconds=0.6),
    ]


def test_buildkit_interleaved_multi_stage_output_in_an_actions_log() -> None:
    # docker/build-push-action output: stages run in parallel, headers repeat when output switches steps.
    log = """\
2024-05-01T10:02:00.0000000Z #7 [linux/amd64 builder 1/4] FROM docker.io/library/golang:1.22@sha256:0f7a1c2e
2024-05-01T10:02:00.0000000Z #7 CACHED
2024-05-01T10:02:00.1000000Z #8 [linux/amd64 builder 2/4] RUN go mod download
2024-05-01T10:02:00.1000000Z #9 [linux/amd64 stage-1 2/3] RUN apk add --no-cache ca-certificates
2024-05-01T10:02:00.5000000Z #8 0.412 go: downloading github.com/spf13/cobra v1.8.0
2024-05-01T10:02:00.6000000Z #9 0.301 fetch https://dl-cdn.alpinelinux.org/alpine/v3.19/main/x86_64/APKINDEX.tar.gz
2024-05-01T10:02:02.0000000Z #9 DONE 1.8s
2024-05-01T10:02:02.0000000Z
2024-05-01T10:02:02.1000000Z #8 [linux/amd64 builder 2/4] RUN go mod download
2024-05-01T10:02:06.3000000Z #8 DONE 6.2s
2024-05-01T10:02:06.4000000Z
2024-05-01T10:02:06.4000000Z #10 [linux/amd64 builder 3/4] COPY . .
2024-05-01T10:02:06.4000000Z #10 CACHED
2024-05-01T10:02:06.5000000Z
2024-05-01T10:02:06.5000000Z #11 [linux/amd64 builder 4/4] RUN go build -o /out/app ./cmd/app
2024-05-01T10:02:09.0000000Z #11 2.480 cmd/app/main.go:12:2: undefined: run
2024-05-01T10:02:09.1000000Z #11 ERROR: process "/bin/sh -c go build -o /out/app ./cmd/app" did not \
complete successfully: exit code: 1
"""

    assert parse_cache_log(log.splitlines()) == [
        layer("RUN apk add --no-cache ca-certificates", hit=False, seconds=1.8),
        layer("RUN go mod download", hit=False, seconds=6.2),
        layer("COPY . .", hit=True),
        layer("RUN go build -o /out/app ./cmd/app", hit=False),
    ]


def test_each_build_in_one_log_counts_its_own_steps() -> None:
    build = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#2 [1/3] FROM docker.io/library/alpine:3.19
#2 DONE 0.0s
#3 [2/3] RUN apk add --no-cache curl
#3 {outcome}
#4 [3/3] COPY entrypoint.sh /usr/local/bin/
#4 CACHED
"""
    first = build.format(outcome="DONE 3.4s")
    # The same numbers again without a logged start line: still a new build.
    second = build.format(outcome="CACHED").split("\n", 2)[2]

    assert parse_cache_log((first + second).splitlines()) == [
        layer("RUN apk add --no-cache curl", hit=False, seconds=3.4),
        layer("COPY entrypoint.sh /usr/local/bin/", hit=True),
        layer("RUN apk add --no-cache curl", hit=True),
        layer("COPY entrypoint.sh /usr/local/bin/", hit=True),
    ]


def test_steps_stopped_by_a_failure_or_a_cut_log_are_not_counted() -> None:
    failed_build = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#5 [builder 2/3] RUN make deps
#6 [runtime 2/3] RUN apt-get update
#7 [runtime 3/3] RUN useradd --system app
#5 ERROR: process "/bin/sh -c make deps" did not complete successfully: exit code: 2
#6 CANCELED
"""
    # The next build's start was not logged; it reuses #7 for an internal step.
    next_build = """\
#7 [internal] load .dockerignore
#7 DONE 0.0s
"""
    # Here the next build's start was logged, and #7 is the export, which has no bracketed label.
    next_build_with_start = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#7 exporting to image
#7 DONE 0.4s
"""

    for log in (failed_build + next_build, failed_build + next_build_with_start):
        assert parse_cache_log(log.splitlines()) == [layer("RUN make deps", hit=False)]


def test_one_job_log_with_both_kinds_carries_run_and_job() -> None:
    # The build log is cut while step #8 still runs: an undecided step is no cache use yet.
    log = ACTIONS_CACHE_JOB_LOG.splitlines() + BUILDKIT_LOG.splitlines()[:30]

    caches = parse_cache_log(iter(log), run_id="run-42", job_id="job-7", source="github")

    assert [(cache.kind, cache.key, cache.hit) for cache in caches] == [
        ("dependency", "Linux-pip-3f2a9c0d", True),
        ("dependency", "Linux-node-9be1e0aa", False),
        ("docker-layer", "WORKDIR /app", True),
        ("docker-layer", "COPY requirements.txt .", True),
    ]
    assert {(cache.run_id, cache.job_id, cache.source) for cache in caches} == {("run-42", "job-7", "github")}


def test_empty_log() -> None:
    assert parse_cache_log([]) == []
