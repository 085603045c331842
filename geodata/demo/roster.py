"""The demo's roster: the units and mediators the seeds describe for a banner (DOMAIN.md, seeds/).

For Otog Front (401 cells, 85 villages, 4 towns): a people's mediation committee (人民调解委员会) in
every village and town and one for the banner; the banner's 10 trade committees (行业性专业性调解委员会:
草牧场纠纷, 婚姻家庭, 物业 …); a 司法所, a 派出所 and a 人民法庭 per town; 信访, the 12345 hotline
and the departments cases are referred to. Mediators: three in each village committee, five in
each town's, the 40-odd retired officials of the banner's expert pool, three per trade committee,
the 474 grid workers who mediate in their cells (the same ratio per cell on other scales), and two
crew on each roving van. Deterministic for a seed, like the rest of the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geodata.demo.cases import GIVEN, SURNAMES
from geodata.demo.territory import Territory

GRID_WORKERS_PER_CELL = 474 / 401  # Otog Front: 474 grid workers mediate, in 401 cells
BANNER_EXPERTS = 42  # "40+ retired-official expert mediators"
VILLAGE_MEDIATORS = 3
TOWN_MEDIATORS = 5
TRADE_MEDIATORS = 3
VAN_CREW = 2
# The banner's trade committees: (name, specialties).
TRADES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("草牧场纠纷", ("grassland", "forest_land")),
    ("婚姻家庭纠纷", ("marriage_family",)),
    ("物业纠纷", ("property_mgmt", "housing_land")),
    ("劳动争议", ("labour",)),
    ("医疗纠纷", ("medical",)),
    ("道路交通事故纠纷", ("traffic", "damages")),
    ("消费纠纷", ("consumer", "contract")),
    ("牧企纠纷", ("herder_enterprise", "business")),
    ("土地流转纠纷", ("land_transfer", "seed_corn")),
    ("民间借贷纠纷", ("private_lending", "contract")),
)
DEPARTMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("自然资源局", ("forest_land", "grassland", "expropriation")),
    ("农牧局", ("grassland", "land_transfer", "seed_corn")),
    ("人力资源和社会保障局", ("labour",)),
    ("住房和城乡建设局", ("housing_land", "property_mgmt", "expropriation")),
    ("市场监督管理局", ("consumer", "business")),
    ("卫生健康委员会", ("medical",)),
    ("生态环境分局", ("pollution",)),
    ("公安局交通管理大队", ("traffic",)),
)
COMMON = ("neighbour", "marriage_family", "housing_land", "damages", "contract", "grassland", "land_transfer")


@dataclass
class DemoUnit:
    key: str  # the demo's own handle, to link mediators (names repeat across areas)
    name: str
    kind: str
    level: str
    area_code: str
    phone: str | None
    specialties: list[str]


@dataclass
class DemoMediator:
    name: str
    phone: str
    level: str
    area_code: str
    unit: str | None  # a DemoUnit.key
    centre: str | None  # a mediation centre's code (MC<area>)
    van: str | None
    specialties: list[str] = field(default_factory=list)


@dataclass
class DemoRoster:
    units: list[DemoUnit]
    mediators: list[DemoMediator]


class _People:
    """Names and mobile numbers, never the same (area, name, phone) twice: phones are unique."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.phones: set[str] = set()

    def name(self) -> str:
        rng = self.rng
        return SURNAMES[rng.integers(len(SURNAMES))] + "".join(
            GIVEN[i] for i in rng.integers(len(GIVEN), size=rng.integers(1, 3))
        )

    def phone(self) -> str:
        while True:
            phone = "1" + str(self.rng.choice([3, 5, 8, 9])) + f"{self.rng.integers(0, 10**9):09d}"
            if phone not in self.phones:
                self.phones.add(phone)
                return phone

    def landline(self) -> str:
        return "0477-" + f"{self.rng.integers(0, 10**7):07d}"

    def specialties(self, pool: tuple[str, ...], k: int = 2) -> list[str]:
        return [str(s) for s in self.rng.choice(pool, size=min(k, len(pool)), replace=False)]


def make_roster(territory: Territory, vans: list[str], rng: np.random.Generator) -> DemoRoster:
    banner = territory.level(1)[0]
    towns = territory.level(2)
    villages = territory.level(3)
    cells = territory.level(4)
    people = _People(rng)
    units: list[DemoUnit] = []
    mediators: list[DemoMediator] = []

    def unit(key: str, name: str, kind: str, level: str, area: str, specs: tuple[str, ...] | list[str]) -> None:
        units.append(DemoUnit(key, name, kind, level, area, people.landline(), list(specs)))

    unit("committee:banner", f"{banner.name}人民调解委员会", "committee", "banner", banner.code, COMMON)
    for trade, specs in TRADES:
        unit(f"trade:{trade}", f"{banner.name}{trade}人民调解委员会", "professional", "banner", banner.code, specs)
    unit("petition", f"{banner.name}信访局", "petition", "banner", banner.code, ())
    unit("hotline", f"{banner.name}12345政务服务便民热线", "hotline", "banner", banner.code, ())
    for dept, specs in DEPARTMENTS:
        unit(f"dept:{dept}", f"{banner.name}{dept}", "department", "banner", banner.code, specs)
    for t in towns:
        unit(f"committee:{t.code}", f"{t.name}人民调解委员会", "committee", "town", t.code, COMMON)
        if int(t.code[-3:]) < 400:  # a development zone (400–) has no 司法所, 派出所 or court of its own
            unit(f"justice:{t.code}", f"{t.name}司法所", "justice_office", "town", t.code, COMMON)
            unit(
                f"police:{t.code}", f"{banner.name}公安局{t.name}派出所", "police_station", "town", t.code, ("traffic",)
            )
            unit(f"court:{t.code}", f"{banner.name}人民法院{t.name}人民法庭", "court", "town", t.code, ("contract",))
    for v in villages:
        unit(f"committee:{v.code}", f"{v.name}人民调解委员会", "committee", "village", v.code, COMMON[:3])

    def mediator(level: str, area: str, unit_key: str | None, centre: str | None, van: str | None, k: int) -> None:
        specs = people.specialties(COMMON if unit_key is None or not unit_key.startswith("trade:") else (), k)
        if unit_key is not None and unit_key.startswith("trade:"):
            specs = list(next(s for t, s in TRADES if unit_key == f"trade:{t}"))
        mediators.append(DemoMediator(people.name(), people.phone(), level, area, unit_key, centre, van, specs))

    centre_banner = f"MC{banner.code}"
    for _ in range(BANNER_EXPERTS):
        mediator("banner", banner.code, "committee:banner", centre_banner, None, 2)
    for trade, _specs in TRADES:
        for _ in range(TRADE_MEDIATORS):
            mediator("banner", banner.code, f"trade:{trade}", centre_banner, None, 0)
    for van in vans:
        for _ in range(VAN_CREW):
            mediator("banner", banner.code, "committee:banner", centre_banner, van, 3)
    for t in towns:
        for _ in range(TOWN_MEDIATORS):
            mediator("town", t.code, f"committee:{t.code}", f"MC{t.code}", None, 2)
    for v in villages:
        for _ in range(VILLAGE_MEDIATORS):
            mediator("village", v.code, f"committee:{v.code}", f"MC{v.code}", None, 2)
    workers = round(len(cells) * GRID_WORKERS_PER_CELL)
    for i in range(workers):
        cell = cells[i % len(cells)]  # one a cell, then a second in the first cells
        village = cell.parent_code
        mediator("grid", cell.code, f"committee:{village}" if village else None, None, None, 1)
    return DemoRoster(units, mediators)


__all__ = ["DemoMediator", "DemoRoster", "DemoUnit", "make_roster"]
