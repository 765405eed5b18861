"""Account names from SSO claims: AD's rules, POSIX's rules, stable, distinct per person."""

import hashlib
import re

import pytest

from hepsdesk_auth.roles import RoleConfigError, check_group_roles, definitions, roles_for
from hepsdesk_auth.usernames import MAX_LENGTH, UsernameError, account_name

POSIX = re.compile(r"^[a-z_][a-z0-9_.-]*$")
AD_FORBIDDEN = set('"/\\[]:;|=,+*?<>@ ')


@pytest.mark.parametrize("claim", ["alice", "zhang.san", "li_si", "wang-wu", "a" * MAX_LENGTH])
def test_a_name_that_is_valid_already_is_kept(claim):
    assert account_name(claim, "sub-1") == claim


@pytest.mark.parametrize("claim", [
    "Zhang San", "张三", "alice@ihep.ac.cn", "a" * 21, "root", "Administrator", "krbtgt", "*)(uid=*",
    "cn=x,ou=y", "x\x00y", "../../etc", "$(reboot)", "a;rm -rf /", "- name: x\n  run: y", "'; DROP", "", "123",
    "ÉLODIE", "user.", "x" * 500, "\u202eevil", "Ａｌｉｃｅ",
])
def test_any_other_claim_becomes_a_valid_marked_name(claim):
    name = account_name(claim, "sub-" + hashlib.sha256(claim.encode()).hexdigest())
    assert POSIX.match(name) and len(name) <= MAX_LENGTH, name
    assert not AD_FORBIDDEN & set(name) and not name.endswith(".")
    assert name != claim and re.search(r"-[a-z2-7]{4}$", name), name


def test_the_same_person_gets_the_same_name_and_different_people_different_ones():
    assert account_name("Zhang San", "sub-a") == account_name("Zhang San", "sub-a")
    assert account_name("Zhang San", "sub-a") != account_name("Zhang San", "sub-b")
    assert account_name("zhang san", "sub-a").startswith("zhang-san-")
    assert account_name("élodie", "s") .startswith("elodie-")


@pytest.mark.parametrize("subject", ["", "x" * 256, "a\x00b", "a\nb", "张三", None])
def test_a_subject_that_cannot_be_recorded_is_an_error(subject):
    with pytest.raises(UsernameError):
        account_name("alice", subject)


ROLES = [{"name": "b7-instrument-scientist", "groups": ["heps-b7-staff"], "description": "B7",
          "scopes": ["read:users!group=heps-b7-users", "access:servers!group=heps-b7-users"]}]


def test_roles_follow_groups_and_keep_the_default_ones():
    roles = check_group_roles(ROLES)
    names = [r["name"] for r in roles_for(roles, {"heps-b7-staff", "heps-users"}, admin=False)]
    assert names == ["user", "b7-instrument-scientist"]
    assert [r["name"] for r in roles_for(roles, {"heps-users"}, admin=True)] == ["user", "admin"]
    assert definitions(roles) == [{"name": "b7-instrument-scientist", "description": "B7",
                                   "scopes": ROLES[0]["scopes"]}]


@pytest.mark.parametrize("entry, says", [
    ({"name": "admin", "groups": ["g"], "scopes": []}, "default roles"),
    ({"name": "Bad Name", "groups": ["g"], "scopes": []}, "not a role name"),
    ({"name": "r-1", "groups": [], "scopes": []}, "groups must be"),
    ({"name": "r-1", "groups": ["g"], "scopes": "read:users"}, "scopes must be"),
    ({"name": "r-1", "groups": ["g"], "scopes": [], "users": ["x"]}, "unknown key"),
])
def test_a_wrong_role_is_refused_with_where_and_why(entry, says):
    with pytest.raises(RoleConfigError, match=says):
        check_group_roles([entry])
