"""A small training script: what a v1 script looks like, with one import changed.

Run it through runner (see submit.py), or on its own with `python train.py`: then
Run.get_context() is an offline run that prints what it records.
"""

import argparse
import math
import os
import struct
import zlib

from runner import Run  # was: from azureml.core import Run


def tiny_png(path, values, width=64, height=32):
    """Write a small line plot as a PNG with the standard library only."""
    rows = []
    lo, hi = min(values), max(values)
    for y in range(height):
        row = bytearray([0])  # filter type 0
        for x in range(width):
            v = values[int(x * (len(values) - 1) / (width - 1))]
            level = int((v - lo) / ((hi - lo) or 1) * (height - 1))
            row += b"\x20\x60\xc0" if height - 1 - y == level else b"\xff\xff\xff"
        rows.append(bytes(row))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    run = Run.get_context()
    run.tag("model", "toy-regression")
    run.add_properties({"dataset": "synthetic-v1"})
    losses = []
    for epoch in range(args.epochs):
        with run.child_run(name=f"epoch-{epoch}") as child:  # one child run per epoch
            loss = math.exp(-args.lr * (epoch + 1)) + 0.01 * epoch
            child.log("loss", loss)
        run.log("loss", loss, step=epoch)
        run.log_row("progress", epoch=epoch, loss=round(loss, 4))
        losses.append(loss)
        print(f"epoch {epoch}: loss {loss:.4f}")
    run.log("final_loss", losses[-1])

    os.makedirs("outputs", exist_ok=True)
    with open("outputs/model.txt", "w") as f:  # ./outputs is stored with the run
        f.write(f"weights trained with lr={args.lr}\n")
    tiny_png("outputs/loss.png", losses)
    run.log_image("loss curve", path="outputs/loss.png")
    print("done")


if __name__ == "__main__":
    main()
