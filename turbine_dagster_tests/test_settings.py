import pytest

from turbine_dagster.settings import Settings


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.environment == "local" and settings.training_hour == 2 and settings.gpu_node_selector == {}


@pytest.mark.parametrize(
    "variable, value",
    [
        ("TURBINE_TRAINING_HOUR", "two"),
        ("TURBINE_TRAINING_HOUR", "25"),
        ("TURBINE_TEAM_STAGGER_MINUTES", "30m"),
        ("TURBINE_PREDICTION_DELAY_HOURS", "-1"),
        ("TURBINE_DRIFT_COOLDOWN_HOURS", "a day"),
        ("TURBINE_DRIFT_COOLDOWN_HOURS", "nan"),
        ("TURBINE_GPU_COUNT", "0"),
        ("TURBINE_GPU_NODE_SELECTOR", "gpu=true"),
        ("TURBINE_GPU_NODE_SELECTOR", '["gpu"]'),
        ("TURBINE_GPU_TOLERATIONS", '{"key": "gpu"}'),
        ("TURBINE_FIRST_WEEK", "2026-1-4"),
        ("TURBINE_TRAINING_DAYS", "mon,thurs"),
    ],
)
def test_an_unparsable_variable_is_named_with_its_value(variable, value):
    with pytest.raises(ValueError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert variable in message and repr(value) in message, message


def test_valid_values_are_read():
    settings = Settings.from_env(
        {
            "TURBINE_TRAINING_HOUR": " 3 ",
            "TURBINE_DRIFT_COOLDOWN_HOURS": "1.5",
            "TURBINE_FIRST_WEEK": "2026-02-01",
            "TURBINE_GPU_NODE_SELECTOR": '{"pool": "gpu"}',
            "TURBINE_GPU_TOLERATIONS": '[{"key": "gpu"}]',
            "TURBINE_TRAINING_DAYS": "Mon, thu",
        }
    )
    assert (settings.training_hour, settings.drift_cooldown_hours, settings.first_week) == (3, 1.5, "2026-02-01")
    assert settings.gpu_node_selector == {"pool": "gpu"} and settings.gpu_tolerations == ({"key": "gpu"},)
    assert settings.training_days == ("mon", "thu")
