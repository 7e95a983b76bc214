"""retailpulse.memory.release_memory hands freed heap memory back to the OS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_memory_returns_freed_heap_pages_to_the_os():
    # ~300 MB of malloc'd blocks, freed while a later block pins the heap's top: glibc keeps the
    # pages (RSS stays up) until malloc_trim hands them back. Own process: a clean RSS.
    code = textwrap.dedent("""
        import os
        from retailpulse.memory import release_memory
        def rss():
            return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        base = rss()
        blocks = [bytes(1500) + str(i).encode() for i in range(200_000)]
        pin = bytes(1500) + b'pin'
        held = rss()
        del blocks
        freed_only = rss()
        result = release_memory()
        print(base, held, freed_only, rss(), result['malloc_trim'])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    base, held, freed_only, released = (int(x) for x in out[:4])
    mb = 2**20
    assert held - base > 250 * mb
    assert freed_only - base > 200 * mb, "glibc returned the pages by itself: the test shows nothing"
    assert released - base < 50 * mb and out[4] == "True"


def test_release_memory_releases_arrow_pool_only_when_arrow_is_loaded():
    code = "import sys; from retailpulse.memory import release_memory; r = release_memory(); " \
           "print(r['arrow_pool'], 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    out = subprocess.run([sys.executable, "-c", "import pyarrow; " + code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]
