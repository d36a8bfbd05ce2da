"""Base for management commands that work on files alone: no database, no system checks, and a
help text printed as written (examples keep their line breaks)."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand


class OfflineCommand(BaseCommand):
    requires_system_checks: list[str] = []  # pure computation: nothing to check, no database to reach
    requires_migrations_checks = False

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser
