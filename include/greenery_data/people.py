"""Made-up people and places: one CSV line of addresses or users, from word lists in ``catalog.py``."""

from __future__ import annotations

import random

from include.greenery_data.catalog import (
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    STATES,
    STREET_NAMES,
    STREET_SUFFIXES,
)
from include.greenery_data.visits import iso

_STATE_NAMES = [name for name, _ in STATES]
_STATE_CUMULATIVE = []
_total = 0
for _, _weight in STATES:
    _total += _weight
    _STATE_CUMULATIVE.append(_total)


def address_line(rng: random.Random, address_id: str) -> str:
    """An addresses row: a US street address with a five-digit zipcode (no leading zero, as zipcode is integer)."""
    street = f"{rng.randint(1, 99999)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
    state = rng.choices(_STATE_NAMES, cum_weights=_STATE_CUMULATIVE)[0]
    return f"{address_id},{street},{rng.randint(10000, 99950)},{state},United States\n"


def phone_number(rng: random.Random) -> str:
    return f"{rng.randint(201, 989)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"


def user_line(rng: random.Random, user_id: str, number: int, created_at: int, updated_at: int, address_id: str) -> str:
    """A users row with a made-up name, email and phone number. ``number`` is the user's place among the shop's
    users: it ends the email's local part, as in the course's (khearmon0@...), so no two users share an email
    (names carry no digits, so initial + last name + number is never another user's)."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first[0]}{last}{number}@{rng.choice(EMAIL_DOMAINS)}".lower()
    return f"{user_id},{first},{last},{email},{phone_number(rng)},{iso(created_at)},{iso(updated_at)},{address_id}\n"
