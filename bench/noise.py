"""Noise beside a watched directory, in its own process: `append FILE S` appends a line every S seconds (a log
beside the spec); `save DIR S` saves DIR/settings.json atomically every S seconds (temp file, rename: an app
saving in ~/.config). Prints 'ready', then runs until killed."""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    mode, target, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    print("ready", flush=True)
    due, count = time.perf_counter(), 0
    while True:
        if mode == "append":
            with open(target, "a") as log:
                log.write(f"line {count}\n")
        else:
            temp = os.path.join(target, f".settings.json.{count}")
            with open(temp, "w") as saved:
                saved.write(str(count))
            os.rename(temp, os.path.join(target, "settings.json"))
        count += 1
        due += interval
        time.sleep(max(0.0, due - time.perf_counter()))


if __name__ == "__main__":
    main()
