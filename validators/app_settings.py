"""The ``settings`` document of the main database: permissions by role and the map view styles."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SETTINGS_ID = "settings"


class Role(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    offline: bool = True


class MapStyle(BaseModel):
    """The colour of a structure on the map for a task code and business status (``*`` matches any code)."""

    model_config = ConfigDict(extra="forbid")
    code: str = "*"
    businessStatus: str
    color: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(SETTINGS_ID, alias="_id")
    type: str = "settings"
    permissions: dict[str, list[str]] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    map_view_styles: list[MapStyle] = Field(default_factory=list)
    # the task title keys and form ids of the programme: when listed, the summarizer keeps only these refs in
    # interaction records (a ref outside the list, possibly a name written as a key, is dropped from its event)
    interaction_refs: list[str] = Field(default_factory=list, alias="interactionRefs")

    def roles_with(self, permission: str) -> set[str]:
        return set(self.permissions.get(permission, []))

    def has_permission(self, permission: str, user_roles: list[str]) -> bool:
        return bool(self.roles_with(permission) & set(user_roles))

    def color_for(self, code: str | None, business_status: str | None) -> str | None:
        """The first style naming this code and status, else the first for any code with this status."""
        for style in self.map_view_styles:
            if style.code == code and style.businessStatus == business_status:
                return style.color
        for style in self.map_view_styles:
            if style.code == "*" and style.businessStatus == business_status:
                return style.color
        return None


# Reveal's map colours: yellow to do, green done, red not done, orange partly, black not eligible.
_STYLES: list[tuple[str, str, str]] = [
    ("*", "Not Visited", "#FFCA16"),
    ("*", "In Progress", "#FF963D"),
    ("*", "Complete", "#2ECC40"),
    ("*", "Not Eligible", "#000000"),
    ("*", "Incomplete", "#FF963D"),
    ("IRS", "Sprayed", "#2ECC40"),
    ("IRS", "Not Sprayed", "#FF0000"),
    ("IRS", "Partially Sprayed", "#FF963D"),
    ("RACD Register Family", "Family Registered", "#2ECC40"),
    ("Blood Screening", "Tested", "#2ECC40"),
    ("Bednet Distribution", "Bednets Distributed", "#2ECC40"),
]


def default_settings() -> dict[str, Any]:
    settings = AppSettings(
        permissions={"can_track_task_interactions": []},
        roles={
            "chw": Role(name="Community health worker"),
            "spray_operator": Role(name="Spray operator"),
            "supervisor": Role(name="Supervisor"),
            "analyst": Role(name="Analyst", offline=False),
        },
        map_view_styles=[MapStyle(code=c, businessStatus=s, color=col) for c, s, col in _STYLES],
    )
    return settings.model_dump(by_alias=True)
