"""assign, unassign, teams, areas: who syncs which operational areas."""

from __future__ import annotations

import argparse

from workers.areas import assignments
from workers.areas.index import MainIndex
from workers.commands.common import Subparsers, couch, group, out
from workers.couch import Couch
from workers.settings import Settings


def _apply(client: Couch, settings: Settings, areas: list[str] | None, index: MainIndex | None = None) -> None:
    index = index or MainIndex(client, settings.dbs.main)
    changed = assignments.apply_security(client, settings, index, areas)
    for area in changed:
        security = client.get_security(settings.dbs.area(area))
        members = security.get("members") or {}
        out(f"area {area} ({settings.dbs.area(area)}): users {','.join(members.get('names') or []) or '-'}, "
            f"teams {','.join(members.get('roles') or []) or '-'}")


def cmd_assign(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)
    index = MainIndex(client, settings.dbs.main)
    assignments.check_user(client, args.user)
    for area in args.areas:
        assignments.check_area(index, area)
    assignments.update(client, settings, lambda a: a.users.setdefault(args.user, []).extend(args.areas))
    _apply(client, settings, args.areas, index)
    out(f"{args.user} syncs {', '.join(args.areas)}")
    return 0


def cmd_unassign(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)

    def drop(a: assignments.Assignments) -> None:
        a.users[args.user] = [x for x in a.users.get(args.user, []) if x not in args.areas]

    assignments.update(client, settings, drop)
    _apply(client, settings, args.areas)
    out(f"{args.user} no longer syncs {', '.join(args.areas)}")
    return 0


def cmd_teams_assign(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)
    for team in args.teams:
        assignments.check_team(team)
    assignments.update(client, settings, lambda a: a.teams.setdefault(args.plan, []).extend(args.teams))
    _apply(client, settings, None)
    out(f"plan {args.plan}: teams {', '.join(args.teams)} sync its areas")
    return 0


def cmd_teams_unassign(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)

    def drop(a: assignments.Assignments) -> None:
        a.teams[args.plan] = [t for t in a.teams.get(args.plan, []) if t not in args.teams]

    assignments.update(client, settings, drop)
    _apply(client, settings, None)
    out(f"plan {args.plan}: teams {', '.join(args.teams)} removed")
    return 0


def cmd_areas_list(args: argparse.Namespace, settings: Settings) -> int:
    client = couch(settings)
    current, _ = assignments.load(client, settings)
    out(f"{'area':38} {'documents':>9}  users / teams")
    for area in assignments.known_areas(client, settings):
        db = settings.dbs.area(area)
        info = client.db_info(db) or {}
        members = client.get_security(db).get("members") or {}
        out(f"{area:38} {info.get('doc_count', 0):>9}  {','.join(members.get('names') or []) or '-'} / "
            f"{','.join(members.get('roles') or []) or '-'}")
    for user, areas in sorted(current.users.items()):
        out(f"user {user}: {', '.join(areas)}")
    for plan, teams in sorted(current.teams.items()):
        out(f"plan {plan}: teams {', '.join(teams)}")
    return 0


def register(sub: Subparsers) -> None:
    assign = sub.add_parser("assign", help="let a user's devices sync operational areas")
    assign.add_argument("user")
    assign.add_argument("areas", nargs="+", metavar="AREA", help="operational area (jurisdiction) ids")
    assign.set_defaults(handler=cmd_assign)
    unassign = sub.add_parser("unassign", help="stop a user's devices syncing operational areas")
    unassign.add_argument("user")
    unassign.add_argument("areas", nargs="+", metavar="AREA")
    unassign.set_defaults(handler=cmd_unassign)

    teams = group(sub, "teams", "teams (CouchDB roles) assigned to plans: their members sync the plan's areas")
    for name, handler, text in (("assign", cmd_teams_assign, "assign teams to a plan"),
                                ("unassign", cmd_teams_unassign, "remove teams from a plan")):
        parser = teams.add_parser(name, help=text)
        parser.add_argument("plan")
        parser.add_argument("teams", nargs="+", metavar="TEAM", help="a role of the team's users")
        parser.set_defaults(handler=handler)

    areas = group(sub, "areas", "operational-area databases")
    areas.add_parser("list", help="each area database, its size and who syncs it").set_defaults(
        handler=cmd_areas_list)
