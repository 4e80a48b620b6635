import importlib
import sys

from anneuron.bench import BENCHES


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in BENCHES:
        sys.exit(f"usage: python -m anneuron.bench {{{','.join(BENCHES)}}} [options]")
    importlib.import_module(f"anneuron.bench.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
