"""Write an inventory plugin's cache entry the way Ansible itself writes it
(its cache plugins wrap keys and values in a schema of their own), so a test
can hand the real plugin data it would otherwise fetch.

usage: python inventory_cache.py CACHE_DIR KEY JSON_FILE
Run it as its own process: it initialises Ansible's plugin loader."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(cache_dir: str, key: str, data_file: str) -> None:
    from ansible.plugins.inventory import get_cache_plugin
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()
    cache = get_cache_plugin(
        "ansible.builtin.jsonfile", _uri=cache_dir, _timeout=86400, _prefix="ansible_inventory_"
    )
    cache[key] = json.loads(Path(data_file).read_text())
    cache.update_cache_if_changed()


if __name__ == "__main__":
    main(*sys.argv[1:4])
