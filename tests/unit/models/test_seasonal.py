"""The time-of-day profile (`models.seasonal`): established only where a daily cycle explains
the variance, weekday and weekend kept apart, and an anomaly not learned into tomorrow."""

from __future__ import annotations

import numpy as np

from edgeml.models.scoring import Scorer
from edgeml.models.seasonal import DAY, SeasonalProfile
from edgeml.topics.records import SensorReading

STEP = 900.0  # 15 min


def _office(day: int, hour: float) -> float:
    weekend = (day + 3) % 7 >= 5
    return 20.0 + (0.0 if weekend else 40.0 * (9 <= hour < 18))


def _run(profile: SeasonalProfile, days: int, value) -> list[float]:  # type: ignore[no-untyped-def]
    s = profile.new_state(0.0, value(0, 0.0))
    for i in range(int(days * DAY / STEP)):
        t = i * STEP
        profile.learn(s, t, value(int(t // DAY), (t % DAY) / 3600.0))
    return s


def test_a_weekday_office_profile_is_learned_with_its_weekend() -> None:
    profile = SeasonalProfile()
    s = _run(profile, 14, _office)
    assert profile.established(s)
    monday_10 = (4 + 7) * DAY + 10 * 3600.0  # day 11 is a Monday (day 0 a Thursday)
    saturday_10 = (2 + 14) * DAY + 10 * 3600.0
    assert abs(profile.expected(s, monday_10) - 60.0) < 1.0
    assert abs(profile.expected(s, saturday_10) - 20.0) < 1.0


def test_noise_without_a_cycle_never_establishes_a_profile() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(50.0, 5.0, 20 * 96).tolist()
    profile = SeasonalProfile()
    s = profile.new_state(0.0, noise[0])
    for i, x in enumerate(noise):
        profile.learn(s, i * STEP, x)
    assert not profile.established(s)
    assert profile.expected(s, 21 * DAY) == 0.0
    assert len(s) > 8  # bins were allocated (a day of history) and compared, then refused


def test_the_daily_step_stops_alerting_once_the_profile_is_in_use() -> None:
    scorer = Scorer()
    state = scorer.new_state("hvac")
    opens_by_day: dict[int, int] = {}
    t0 = 1_700_006_400.0  # a Wednesday 00:00 UTC
    for i in range(int(21 * DAY / STEP)):
        t = t0 + i * STEP
        day, hour = int((t - t0) // DAY), ((t - t0) % DAY) / 3600.0
        x = 20.0 + 40.0 * (9 <= hour < 18) + 0.3 * np.sin(i * 1.7)
        (scored,) = scorer.score(state, [SensorReading("hvac", t, i, {"kw": x})])
        opens = sum(a.state == "open" for a in scored.alerts)
        opens_by_day[day] = opens_by_day.get(day, 0) + opens
    assert scorer.seasonal.established(state.seasons["kw"])
    assert sum(opens_by_day[d] for d in range(7, 21)) == 0  # weeks 2-3: the 09:00 step expected
