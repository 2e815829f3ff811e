"""`python app.py` starts the server, the same as `emotion2vec-webui serve`."""

import sys

from emotion2vec_webui.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
