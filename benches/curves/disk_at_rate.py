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

and a third way, which no server here uses:

  segment     each message overwrites its slot of one file that was filled with zeros and synced
              before the run, then waits for an fdatasync of that file batched by group commit:
              no block is allocated and no name changes, so no journal commit is needed, only the
              data's write and the device's cache flush. The floor of a spool that made messages
              durable in a pre-allocated log of its own, as a database's write-ahead log does.

A file is removed 5 ms after its commit (by one thread), as the relay does once the sink has it.
Each way runs in halves, A B C C B A, so none always comes first. Prints one line per way:
"ORDER p50 p99 p99.9" in ms, latency counted from the due time (so a commit that waits for a
writer counts its wait). Any failed system call fails the run (exit 1). Only Python and libc; no
server is involved.
"""

import ctypes
import os
import sys
import threading
import time

SYNC_FILE_RANGE_ALL = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]


class GroupCommit:
    """Group commit of one sync call: a ticket is covered by a call begun after it was taken.

    The directory's fsync (opened for each call, as spool/syncer.rs does) and the segment
    file's fdatasync both go through it.
    """

    def __init__(self, sync_once):
        self.sync_once = sync_once
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
        synced = False
        try:
            self.sync_once()
            synced = True
        finally:
            # A failed call covers nobody (the caller's error ends the run).
            with self.cv:
                self.running = False
                if synced:
                    self.synced = max(self.synced, upto)
                self.cv.notify_all()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def zeroed_segment(path, length):
    """A file of `length` zero bytes, written and synced with its directory entry."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    zeros = bytes(1 << 20)
    for _ in range(0, length, len(zeros)):
        os.write(fd, zeros)
    os.fsync(fd)
    fsync_dir(os.path.dirname(path))
    return fd


class Unlinker:
    """Removes each file 5 ms after its commit, from one thread."""

    def __init__(self, errors):
        self.errors = errors
        self.due, self.cv, self.stopped = [], threading.Condition(), False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def later(self, path):
        with self.cv:
            self.due.append((time.perf_counter() + 0.005, path))
            self.cv.notify()

    def run(self):
        while True:
            with self.cv:
                while not self.due and not self.stopped:
                    self.cv.wait()
                if not self.due:
                    return
                when, path = self.due[0]
                wait = when - time.perf_counter()
                if wait > 0:
                    self.cv.wait(wait)
                    continue
                self.due.pop(0)
            try:
                os.unlink(path)
            except OSError as e:
                self.errors.append(f"unlink: {e}")

    def stop(self):
        with self.cv:
            self.stopped = True
            self.cv.notify()
        self.thread.join()


def run(folder, order, rate, seconds, size, writers, latencies, errors):
    data = os.urandom(size)
    dirsync = GroupCommit(lambda: fsync_dir(folder))
    unlinker = Unlinker(errors)
    total = max(50, int(rate * seconds))
    slot = (size + 4095) // 4096 * 4096
    segment = None
    if order == "segment":
        segment = zeroed_segment(f"{folder}/segment", total * slot)
        segsync = GroupCommit(lambda: os.fdatasync(segment))
    start = time.perf_counter() + 0.2
    lock = threading.Lock()

    def writer(k):
        try:
            write(k)
        except OSError as e:
            with lock:
                errors.append(f"{order}: {e}")

    def write(k):
        for i in range(k, total, writers):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if segment is not None:
                os.pwrite(segment, data, i * slot)
                segsync.sync()
                with lock:
                    latencies.append((time.perf_counter() - due) * 1000)
                continue
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
            unlinker.later(final)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    unlinker.stop()
    if segment is not None:
        os.close(segment)
        os.unlink(f"{folder}/segment")


def quantiles(latencies):
    v = sorted(latencies)

    def q(p):
        return v[min(len(v) - 1, round((len(v) - 1) * p))]

    return q(0.5), q(0.99), q(0.999)


def main():
    folder, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 10240
    writers = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    os.makedirs(folder, exist_ok=True)
    ways = ("exogate", "file-first", "segment")
    latencies = {way: [] for way in ways}
    errors = []
    for way in ways + ways[::-1]:
        run(folder, way, rate, seconds / 2, size, writers, latencies[way], errors)
    if errors:
        sys.exit("disk_at_rate.py: " + "; ".join(errors[:3]))
    for order, values in latencies.items():
        p50, p99, p999 = quantiles(values)
        print(f"{order} {p50:.2f} {p99:.2f} {p999:.2f}")


if __name__ == "__main__":
    main()
