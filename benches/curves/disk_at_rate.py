#!/usr/bin/env python3
"""The disk's own latency for a queue commit at a given rate: what no server can go below there.

Usage: disk_at_rate.py DIR RATE SECONDS [SIZE] [WRITERS]

Open loop, as loadgen --rate paces: message i is due at i/RATE; WRITERS threads (default 20, the
sessions of the concurrency curve) each create, write and rename a SIZE-byte file (default 10240)
in DIR, then make it durable in one of two orders, both with directory fsyncs batched by group
commit (one fsync of the directory covers every file renamed before it began), as exogate's
spool/syncer.rs does:

  exogate     write-out of the data (sync_file_range WRITE|WAIT), batched directory fsync, then
              fdatasync: the order of spool/mod.rs since spool/writeback.rs
  file-first  fdatasync, then batched directory fsync: the order before it

A file is removed 5 ms after its commit, as the relay does once the sink has it. Prints one line
per order: "ORDER p50 p99 p99.9" in ms, latency counted from the due time (so a commit that waits
for a writer counts its wait). Only Python and libc; no server is involved.
"""

import ctypes
import os
import sys
import threading
import time

SYNC_FILE_RANGE_ALL = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]


class DirSync:
    """Group commit of a directory's fsyncs: a ticket is covered by an fsync begun after it."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        self.cv = threading.Condition()
        self.asked = self.synced = 0
        self.running = False

    def sync(self):
        with self.cv:
            self.asked += 1
            ticket = self.asked
            while True:
                if self.synced >= ticket:
                    return
                if not self.running:
                    self.running = True
                    upto = self.asked
                    break
                self.cv.wait()
        try:
            os.fsync(self.fd)
        finally:
            with self.cv:
                self.running = False
                self.synced = max(self.synced, upto)
                self.cv.notify_all()


def run(folder, order, rate, seconds, size, writers):
    os.makedirs(folder, exist_ok=True)
    data = os.urandom(size)
    dirsync = DirSync(folder)
    total = max(100, int(rate * seconds))
    start = time.perf_counter() + 0.2
    latencies, lock = [], threading.Lock()

    def writer(k):
        for i in range(k, total, writers):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            tmp, final = f"{folder}/{order}-{i}.tmp", f"{folder}/{order}-{i}.q"
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            os.write(fd, data)
            os.rename(tmp, final)
            if order == "exogate":
                if libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_ALL) != 0:
                    raise OSError(ctypes.get_errno(), "sync_file_range")
                dirsync.sync()
                os.fdatasync(fd)
            else:
                os.fdatasync(fd)
                dirsync.sync()
            os.close(fd)
            took = (time.perf_counter() - due) * 1000
            with lock:
                latencies.append(took)
            threading.Timer(0.005, os.unlink, (final,)).start()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.05)
    latencies.sort()

    def q(p):
        return latencies[min(len(latencies) - 1, round((len(latencies) - 1) * p))]

    return q(0.5), q(0.99), q(0.999)


def main():
    folder, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 10240
    writers = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    for order in ("exogate", "file-first"):
        p50, p99, p999 = run(folder, order, rate, seconds, size, writers)
        print(f"{order} {p50:.2f} {p99:.2f} {p999:.2f}")


if __name__ == "__main__":
    main()
