"""Write the tiny training set that examples/train/tiny.yaml reads (real faces, synthetic clips; offline).

    python examples/train/make_tiny_data.py data/tiny
"""

import sys

from fantasyid.training.synthetic import make_identity_dataset

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else "data/tiny"
    print(make_identity_dataset(folder, identities=3))
