"""Moving over from the original chatazure: its chat.db, made with its own DDL, works at once."""
import sqlite3
import subprocess

import pytest

from conftest import BIN, E2E_STORE, Gateway, http_json

# The original's users table as gorm creates it (the October 2023 flavour, with can_use_gpt4).
ORIGINAL_DDL = """
CREATE TABLE `users` (`id` integer PRIMARY KEY AUTOINCREMENT,`username` text NOT NULL,`password` text NOT NULL,
`can_use_gpt4` integer NOT NULL DEFAULT 1,`count` integer NOT NULL DEFAULT 0,`status` integer NOT NULL DEFAULT 1,
`create_time` datetime,`update_time` datetime);
CREATE UNIQUE INDEX `idx_users_password` ON `users`(`password`);
CREATE UNIQUE INDEX `idx_users_username` ON `users`(`username`);
"""


def original_db(path):
    db = sqlite3.connect(path)
    db.executescript(ORIGINAL_DDL)
    db.executemany("INSERT INTO users (username, password, can_use_gpt4, count, status, update_time) VALUES (?, ?, ?, ?, ?, ?)", [
        ("olga", "sk-olga-only-in-the-db-01", 1, 120, 1, "2023-12-24 20:00:00.5+08:00"),
        ("otto", "sk-otto-disabled-there-02", 1, 3, 0, "2023-12-01 08:00:00+08:00"),
        ("omar", "sk-omar-no-gpt4-access-03", 0, 9, 1, "2023-12-02 08:00:00+08:00"),
    ])
    db.commit()
    db.close()


@pytest.mark.skipif(E2E_STORE == "postgresql", reason="the original's chat.db at web.dbName becomes the SQLite store; "
                    "into PostgreSQL, import-legacy brings it (test_import_legacy_command)")
def test_original_chat_db_keys_work_without_reissue(tmp_path, emulator):
    folder = tmp_path / "gw"
    folder.mkdir()
    original_db(folder / "chat.db")
    # otto is listed in config.yaml too, as a team moving over would leave him: he stays disabled.
    gateway = Gateway(folder, emulator.url, processes=1, users={"otto": "sk-otto-disabled-there-02"})
    try:
        def chat(key, model="gpt-4o"):
            return http_json("POST", gateway.url + "/v1/chat/completions",
                             {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                             {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})[0]
        assert chat("sk-olga-only-in-the-db-01") == 200
        assert chat("sk-otto-disabled-there-02") == 403
        assert chat("sk-omar-no-gpt4-access-03") == 403
        assert chat("sk-omar-no-gpt4-access-03", model="gpt-35-turbo-instruct") == 200
        usage = gateway.usage_when(lambda usage: usage["olga"]["requests"] >= 120 + 1, what="olga's request committed")
        assert usage["olga"]["requests"] == 120 + 1 and usage["otto"]["requests"] == 3
        assert usage["otto"]["disabled"]
        for suffix in ("", "-wal"):
            path = folder / f"chat.db{suffix}"
            if path.exists():
                assert b"sk-olga-only-in-the-db" not in path.read_bytes()
    finally:
        gateway.stop()


def test_import_legacy_command(tmp_path, gateway):
    original_db(tmp_path / "old.db")
    result = subprocess.run([BIN, "import-legacy", str(tmp_path / "old.db"), "--config", gateway.config],
                            capture_output=True, text=True, check=True)
    assert "imported 3 users (1 disabled" in result.stdout
    status, _, _ = http_json("POST", gateway.url + "/v1/chat/completions", {"model": "gpt-4o", "messages": []},
                             {"Authorization": "Bearer sk-olga-only-in-the-db-01", "Content-Type": "application/json"})
    assert status == 200
