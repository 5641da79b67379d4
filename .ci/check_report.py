"""Fail unless the JUnit report shows PostgreSQL tests that ran and passed (none skipped)."""

import sys
import xml.etree.ElementTree as ET

MINIMUM_POSTGRES_TESTS = 100


def main(path: str) -> int:
    cases = ET.parse(path).getroot().iter("testcase")  # noqa: S314 (our own report)
    postgres = [case for case in cases if "[postgresql" in case.get("name", "")]
    skipped = [case for case in postgres if case.find("skipped") is not None]
    failed = [case for case in postgres if case.find("failure") is not None or case.find("error") is not None]
    ran = len(postgres) - len(skipped)
    print(f"PostgreSQL tests: {len(postgres)} collected, {ran} ran, {len(skipped)} skipped, {len(failed)} failed")
    if ran < MINIMUM_POSTGRES_TESTS or skipped or failed:
        print("FAIL: the real PostgreSQL tests did not all run and pass", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
