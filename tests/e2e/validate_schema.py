"""Validates JSON documents against a JSON Schema (draft 2020-12) with the `jsonschema` package.

    python3 tests/e2e/validate_schema.py SCHEMA.json DOC.json [DOC.json ...]

Prints {"validated": N}; exits non-zero naming the first document and the error otherwise.
"""

import json
import sys

from jsonschema import Draft202012Validator


def main():
    schema = json.load(open(sys.argv[1]))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in sys.argv[2:]:
        doc = json.load(open(path))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            print(f"{path}: {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
            sys.exit(1)
    print(json.dumps({"validated": len(sys.argv) - 2}))


if __name__ == "__main__":
    main()
