"""bench/regenerate_docs.py: a page's measured blocks are replaced by their command's last table."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("regenerate_docs", ROOT / "bench" / "regenerate_docs.py")
regenerate_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate_docs)

PRINT_TABLE = ("python -c \"print('noise'); print('| x |'); print('2026-12-06, x86_64, 2 cores'); "
               "print('| a | b |'); print('| - | - |'); print('| 1 | 2 |')\"")


def test_a_block_gets_the_last_table_under_the_command_and_machine(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"intro\n<!-- measured: {PRINT_TABLE} -->\nold table\n<!-- /measured -->\nafter\n"
                    f"<!-- measured: python -c \"print(1)\" -->\nkept\n<!-- /measured -->\n")
    reports = regenerate_docs.regenerate(page, "", root=tmp_path)
    text = page.read_text()
    assert "old table" not in text and "| a | b |\n| - | - |\n| 1 | 2 |\n<!-- /measured -->" in text
    assert "(2026-12-06, x86_64, 2 cores;" in text and text.startswith("intro\n") and "\nafter\n" in text
    assert "kept\n" in text and "kept the old table (the command printed no Markdown table)" in reports[1]
    assert reports[0].endswith("1 rows")


def test_every_measured_block_of_the_docs_names_a_bench_script():
    blocks = [m["command"] for page in regenerate_docs.pages(ROOT) for m in regenerate_docs.BLOCK.finditer(page.read_text())]
    assert blocks
    for command in blocks:
        script = command.split()[1]
        assert command.startswith("python bench/") and (ROOT / script).is_file(), command
