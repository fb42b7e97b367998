from __future__ import annotations

from luno_wf import delete_topic, make_role, run_state_change_topic, topic


def test_topics_follow_lunos_format() -> None:
    assert topic("user sign up", 1) == "user_sign_up-1"
    assert topic("my_workflow", 1) == "my_workflow-1"
    assert delete_topic("user sign up") == "user_sign_up-delete"
    assert run_state_change_topic("User Sign Up") == "User_Sign_Up-run-state-change"


def test_roles_are_lower_case_with_underscores() -> None:
    assert (
        make_role("User Sign Up", "1", "consumer", "1", "of", "2")
        == "user_sign_up-1-consumer-1-of-2"
    )
