"""SMART on FHIR authorisation: scopes, grants, the embedded authorisation server, token checks.

The web layer uses only these names (plus `adapter.auth.service.build_smart_services`).
"""

from __future__ import annotations

from adapter.auth.access import (
    authorize_bundle,
    check_readable,
    check_resource,
    filter_bundle_for_grant,
    may_access,
    narrow_search,
    require,
)
from adapter.auth.compartment import PATIENT_COMPARTMENT, in_patient_compartment
from adapter.auth.scopes import ScopeRule, SmartGrant, parse_scope, parse_scopes
from adapter.auth.settings import AuthSettings

__all__ = [
    "PATIENT_COMPARTMENT",
    "AuthSettings",
    "ScopeRule",
    "SmartGrant",
    "authorize_bundle",
    "check_readable",
    "check_resource",
    "filter_bundle_for_grant",
    "in_patient_compartment",
    "may_access",
    "narrow_search",
    "parse_scope",
    "parse_scopes",
    "require",
]
