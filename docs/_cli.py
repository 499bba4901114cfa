"""The parser the CLI reference is generated from: ``prunenet.cli.build_parser()`` itself, with
each description that argparse prints as written (``RawDescriptionHelpFormatter``, such as
``prunenet prune``'s examples) handed to Sphinx as a literal block, so it renders as printed."""
import argparse
import textwrap

from prunenet.cli import build_parser as _build_parser


def _literal_descriptions(parser):
    if parser.formatter_class is argparse.RawDescriptionHelpFormatter and parser.description:
        parser.description = "As ``--help`` prints it::\n\n" + textwrap.indent(
            parser.description, "    ")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _literal_descriptions(sub)


def build_parser():
    parser = _build_parser()
    _literal_descriptions(parser)
    return parser
