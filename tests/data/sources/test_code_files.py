"""CodeFilesSource: tree-sitter (doc, function) extraction per language, drop rules, shards."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from cpt_jax.data.sources import CodeFilesSource
from cpt_jax.data.sources.base import DropStats
from cpt_jax.data.sources.code_pairs import mine

PYTHON = '''\
import os


def add(a, b):
    """Add two numbers.

    Returns their sum.
    """
    # the sum
    return a + b


class Box:
    @property
    def size(self):
        r"""The box's size in cm."""
        return self._size

    async def fetch(self, url):
        \'\'\'Fetch a url asynchronously.\'\'\'  # trailing remark
        return await get(url)

    def undocumented(self):
        return 1

    def abstract(self):
        """An abstract placeholder here."""
        raise NotImplementedError("subclass")

    def inline(self): "Inline docs are not removable."; return 2

    def fstring(self):
        f"""Not a docstring {x}."""
        return 3
'''

PYTHON_PAIRS = [
    ("Add two numbers.\n\nReturns their sum.", "def add(a, b):\n    # the sum\n    return a + b\n"),
    ("The box's size in cm.", "def size(self):\n    return self._size\n"),
    ("Fetch a url asynchronously.", "async def fetch(self, url):\n    return await get(url)\n"),
]

GO = """\
package geo

//go:generate stringer -type=Kind
// Distance returns the distance
// between two points.
//nolint:errcheck
func Distance(a, b Point) float64 {
\treturn math.Hypot(a.X-b.X, a.Y-b.Y)
}

// Scale multiplies a point in place.

func (p *Point) Scale(f float64) {
\tp.X *= f
}

/* Block comments are not Go doc here. */
func Block() int { return 1 }

x := 1 // not a doc comment
// Norm gives the length of p.
func (p Point) Norm() float64 { return Distance(p, Point{}) }
"""

GO_PAIRS = [
    (
        "Distance returns the distance\nbetween two points.",
        "func Distance(a, b Point) float64 {\n\treturn math.Hypot(a.X-b.X, a.Y-b.Y)\n}\n",
    ),
    ("Norm gives the length of p.", "func (p Point) Norm() float64 { return Distance(p, Point{}) }\n"),
]

JAVA = """\
package demo;

public class Calc {
    /**
     * Adds two integers.
     *
     * @param a first
     * @return the sum
     */
    @Override
    public int add(int a, int b) {
        return a + b;
    }

    /** Builds a calculator with a name. */
    public Calc(String name) {
        this.name = name;
    }

    /* Not Javadoc at all. */
    int plain() { return 0; }

    /** Has no body in an interface. */
    abstract int later();
}
"""

JAVA_PAIRS = [
    (
        "Adds two integers.\n\n@param a first\n@return the sum",
        "@Override\npublic int add(int a, int b) {\n    return a + b;\n}\n",
    ),
    ("Builds a calculator with a name.", "public Calc(String name) {\n    this.name = name;\n}\n"),
]

JAVASCRIPT = """\
/**
 * Adds two numbers together.
 * @param {number} a
 */
function add(a, b) {
  return a + b;
}

/** Doubles the given value. */
const double = (x) => x * 2;

/** Exported greeting for a user. */
export function greet(name) { return `hi ${name}`; }

class Shape {
  /** Area of the shape in units. */
  area() {
    return this.w * this.h;
  }
}

/** Attached to the prototype here. */
Shape.prototype.perimeter = function () { return 2 * (this.w + this.h); };

// Line comments are not JSDoc.
function plain() { return 1; }

items.map(function (x) { return x; });
"""

JAVASCRIPT_PAIRS = [
    ("Adds two numbers together.\n@param {number} a", "function add(a, b) {\n  return a + b;\n}\n"),
    ("Doubles the given value.", "const double = (x) => x * 2;\n"),
    ("Exported greeting for a user.", "export function greet(name) { return `hi ${name}`; }\n"),
    ("Area of the shape in units.", "area() {\n  return this.w * this.h;\n}\n"),
    (
        "Attached to the prototype here.",
        "Shape.prototype.perimeter = function () { return 2 * (this.w + this.h); };\n",
    ),
]

RUBY = """\
# frozen_string_literal: true

# Adds two numbers
# and returns the sum.
def add(a, b)
  a + b
end

class Greeter
  # Builds a friendly greeting string.
  def self.greet(name)
    "hi #{name}"
  end

  # An empty method body here.
  def nothing; end

  def undocumented
    1
  end
end
"""

RUBY_PAIRS = [
    ("Adds two numbers\nand returns the sum.", "def add(a, b)\n  a + b\nend\n"),
    ("Builds a friendly greeting string.", 'def self.greet(name)\n  "hi #{name}"\nend\n'),
]

PHP = """\
<?php
/**
 * Adds two numbers together.
 */
function add($a, $b) {
    return $a + $b;
}

class Cart {
    /**
     * Total price of the cart.
     */
    public function total(): float {
        return array_sum($this->prices);
    }

    # Hash comments are not PHPDoc.
    public function count() { return 0; }
}
"""

PHP_PAIRS = [
    ("Adds two numbers together.", "function add($a, $b) {\n    return $a + $b;\n}\n"),
    ("Total price of the cart.", "public function total(): float {\n    return array_sum($this->prices);\n}\n"),
]

CASES = {
    "python": (PYTHON, PYTHON_PAIRS, {"no_docstring": 2, "empty_body": 1, "inline_docstring": 1}),
    "go": (GO, GO_PAIRS, {"no_docstring": 2}),
    "java": (JAVA, JAVA_PAIRS, {"no_docstring": 1, "empty_body": 1}),
    "javascript": (JAVASCRIPT, JAVASCRIPT_PAIRS, {"no_docstring": 1}),
    "ruby": (RUBY, RUBY_PAIRS, {"no_docstring": 1, "empty_body": 1}),
    "php": (PHP, PHP_PAIRS, {"no_docstring": 1}),
}


@pytest.mark.parametrize("language", list(CASES))
def test_extraction_per_language(language: str):
    text, expected, dropped = CASES[language]
    stats = DropStats()
    pairs = list(mine(text.encode(), language, stats, min_doc_words=3, max_error_fraction=0.05))
    assert [(p.x, p.y) for p in pairs] == expected
    assert stats.as_dict() == dropped


def _write(root: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_source_shards_by_extension_and_language(tmp_path: pathlib.Path):
    extensions = {"python": "py", "go": "go", "java": "java", "javascript": "js", "ruby": "rb", "php": "php"}
    for language, ext in extensions.items():
        _write(tmp_path, f"repo/{language}/main.{ext}", CASES[language][0])
    _write(tmp_path, "repo/README.md", "# not code")
    everything = CodeFilesSource(paths=(str(tmp_path / "repo" / "**"),)).build()
    assert everything.shards() == sorted(str(tmp_path / f"repo/{l}/main.{e}") for l, e in extensions.items())
    for i, shard in enumerate(everything.shards()):
        language = pathlib.Path(shard).parent.name
        assert [(p["x"], p["y"]) for p in everything.read_shard(i)] == CASES[language][1]
    some = CodeFilesSource(paths=(str(tmp_path / "repo" / "**"),), languages=("go", "ruby")).build()
    assert [pathlib.Path(s).suffix for s in some.shards()] == [".go", ".rb"]
    with pytest.raises(ValueError, match=r"none with an extension of \['php'\] \(\.php\)"):
        CodeFilesSource(paths=(str(tmp_path / "repo" / "*.md"),), languages=("php",)).build()


def test_file_level_drop_rules(tmp_path: pathlib.Path):
    _write(tmp_path, "big.py", PYTHON + "#" * 2000)
    (tmp_path / "latin1.py").write_bytes('def f():\n    "Caf\xe9 docs here ok."\n    return 1\n'.encode("latin-1"))
    _write(tmp_path, "broken.py", "def f(:\n  ]]] (((\n" * 20)
    _write(tmp_path, "partial.py", PYTHON + "\ndef broken(a):\n    '''Doc of the broken one.'''\n    return a ) b\n")
    _write(tmp_path, "partial.js", JAVASCRIPT + "\n/** Doc of the broken one. */\nfunction broken(a) { return a ) b; }\n")
    source = CodeFilesSource(paths=(str(tmp_path / "*.[pj]*"),), max_file_bytes=len(PYTHON) + 100).build()
    names = [pathlib.Path(s).name for s in source.shards()]
    results = {name: list(source.read_shard(i)) for i, name in enumerate(names)}
    assert results["big.py"] == results["latin1.py"] == results["broken.py"] == []
    assert results["partial.py"] == []  # ast: one syntax error skips the whole Python file
    assert [(p["x"], p["y"]) for p in results["partial.js"]] == JAVASCRIPT_PAIRS  # tree-sitter: one function
    dropped = source.stats.as_dict()
    assert dropped["file_too_large"] == 1
    assert dropped["invalid_utf8"] == 1
    assert dropped["unparsable_source"] == 2
    assert dropped["function_parse_error"] == 1


def test_duplicates_within_a_file_are_dropped_not_across_files(tmp_path: pathlib.Path):
    func = 'def f(x):\n    """Return x unchanged always."""\n    return x\n'
    _write(tmp_path, "a.py", func + "\n\n" + func + "\n\nclass A:\n" + textwrap.indent(func, "    "))
    _write(tmp_path, "b.py", func)
    source = CodeFilesSource(paths=(str(tmp_path / "*.py"),)).build()
    assert len(list(source.read_shard(0))) == 1
    assert len(list(source.read_shard(1))) == 1
    assert source.stats.as_dict() == {"duplicate_pair": 2}  # the nested copy is dedented: same y


def test_short_docstrings_and_determinism_and_resume(tmp_path: pathlib.Path):
    funcs = "".join(f'def f{i}(x):\n    """Doc {"word " * (i % 4)}end."""\n    return x + {i}\n\n' for i in range(40))
    _write(tmp_path, "m.py", funcs)
    source = CodeFilesSource(paths=(str(tmp_path / "m.py"),), min_doc_words=3).build()
    full = list(source.read_shard(0))
    assert len(full) == 30 and source.stats.as_dict() == {"short_docstring": 10}
    assert list(source.read_shard(0)) == full
    assert list(source.read_shard(0, start=13)) == full[13:]
