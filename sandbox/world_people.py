"""The hidden truth of the sandbox world: campaigns and ad spend, people, orders.

People follow BG/NBD (purchase rate lambda ~ Gamma(r, alpha), drop-out after every purchase with
probability p ~ Beta(a, b)) and Gamma-Gamma spend (per-person nu ~ Gamma(q, gamma), order value
~ Gamma(p_gg, nu)). Acquisition grows over the period; paid acquisition follows daily ad spend.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.world_util import (DAY, HOUR, MINUTE, US, Streams, date_us, diurnal_offsets, join,
                                padded_ids, rank_in_group, take)

CHANNELS = ["organic_search", "paid_search", "paid_social", "email", "direct", "referral", "affiliate"]
CH = {c: i for i, c in enumerate(CHANNELS)}
ACQ_SHARE = np.array([.27, .22, .16, .08, .12, .07, .08])
RETURN_SHARE = np.array([.18, .12, .08, .22, .30, .04, .06])

COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IE", "CA"]
COUNTRY_P = np.array([.50, .15, .09, .07, .05, .04, .04, .06])
COUNTRY_CUR = ["usd", "gbp", "eur", "eur", "eur", "eur", "eur", "usd"]
COUNTRY_NAME = ["United States", "United Kingdom", "Germany", "France", "Netherlands", "Spain",
                "Ireland", "Canada"]
CURRENCIES = ["usd", "eur", "gbp"]
FX_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
CUR_FX = np.array([1.0, 1.08, 1.27])
COUNTRY_CUR_CODE = np.array([CURRENCIES.index(c) for c in COUNTRY_CUR])

# BG/NBD + Gamma-Gamma parameters (per day; USD)
BGNBD = dict(r=0.55, alpha=70.0, a=0.9, b=2.4)
GG = dict(p=4.0, q=3.6, gamma=42.0)

FIRST_NAMES = """James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty
Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle
Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Edward Sharon
Jason Laura Jeffrey Cynthia Ryan Kathleen Jacob Amy Gary Angela Nicholas Shirley Eric Anna Jonathan
Brenda Stephen Pamela Larry Emma Justin Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel
Christine Gregory Debra Alexander Rachel Frank Carolyn Patrick Janet Raymond Catherine Jack Maria
Dennis Heather Jerry Diane Tyler Ruth Aaron Julie Oliver Charlotte Harry Sophie Lukas Hannah Lea
Felix Mila Louis Chloe Hugo Camille Lucas Manon Daan Julia Sem Tess Pablo Lucia Sean Aoife Conor
Niamh Noah Olivia Liam Ava Ethan Mia Mason Isla Leon Clara Jan Marie Paul Anna Finn Lena""".split()
LAST_NAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores
Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner
Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz
Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez
Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross
Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher
Vasquez Simmons Graham Marshall Owens Harrison Mueller Schmidt Schneider Fischer Weber Meyer Wagner
Becker Schulz Hoffmann Dubois Durand Leroy Moreau Laurent Lefebvre Bernard Petit Jansen Visser
Smit Bakker Meijer Fernandez Navarro Romero Molina Byrne Ryan OBrien Walsh Doyle Kennedy McCarthy
Lynch Murray Quinn Moran Evans Davies Hughes Wright Roberts Thompson Clarke Jackson""".split()
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me",
                 "aol.com", "gmx.de", "web.de", "orange.fr", "btinternet.com", "ziggo.nl", "eircom.net"]
EMAIL_DOMAIN_P = np.array([.38, .1, .1, .08, .1, .03, .03, .04, .03, .03, .03, .03, .02])
WORK_DOMAINS = ["acme-corp.com", "globex.com", "initech.io", "umbrella.co", "hooli.com", "stark.example"]

# country -> (E.164 prefix, national number digits, national trunk prefix)
PHONE_PLAN = {"US": ("+1", 10, "1"), "CA": ("+1", 10, "1"), "GB": ("+44", 10, "0"),
              "DE": ("+49", 10, "0"), "FR": ("+33", 9, "0"), "NL": ("+31", 9, "0"),
              "ES": ("+34", 9, ""), "IE": ("+353", 9, "0")}


@dataclass
class Ctx:
    size: str
    seed: int
    start: dt.date
    end: dt.date
    horizon_days: int
    n_people: int
    anon_factor: float
    streams: Streams = field(init=False)

    def __post_init__(self):
        self.streams = Streams(self.seed)
        self.start_us = date_us(self.start)
        self.end_excl_us = date_us(self.end + dt.timedelta(days=1))
        self.sim_end_us = self.end_excl_us + self.horizon_days * DAY
        self.n_obs_days = (self.end - self.start).days + 1

    def rng(self, name: str) -> np.random.Generator:
        return self.streams(name)

    def day_weights(self) -> np.ndarray:
        """Relative business activity per observation day: growth, weekday, holiday season."""
        d = np.arange(self.n_obs_days)
        dates = np.array([self.start + dt.timedelta(days=int(i)) for i in d])
        growth = np.exp(0.65 * d / 365.0)
        wd = np.array([x.weekday() for x in dates])
        weekday = np.where(wd >= 5, 0.9, 1.0) * np.where(wd == 0, 1.08, 1.0)
        month = np.array([x.month for x in dates])
        dom = np.array([x.day for x in dates])
        season = np.where((month == 11) & (dom >= 20), 1.9, 1.0) * np.where((month == 12) & (dom <= 20), 1.5, 1.0)
        season = season * np.where(month == 1, 0.85, 1.0) * np.where(month == 8, 0.9, 1.0)
        return growth * weekday * season


# ==========================================================================================
# campaigns and ad spend
@dataclass
class Campaigns:
    table: pa.Table            # campaigns table as written
    channel: np.ndarray        # channel code per campaign
    start_day: np.ndarray      # first active observation day (int)
    end_day: np.ndarray        # last active day (inclusive)
    paid_cols: dict            # channel code -> campaign indices (columns of spend)
    spend: np.ndarray          # (n_days, n_campaigns) USD, 0 where not paid/active
    cpc: np.ndarray            # per campaign base cost per click (USD)
    email_idx: np.ndarray      # email campaign indices sorted by send day
    channel_default: dict      # channel code -> default campaign index (none/affiliate)
    google_ids: np.ndarray     # int64 google ads campaign id (or 0)


def _black_friday(year: int) -> dt.date:
    nov1 = dt.date(year, 11, 1)
    first_thu = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thu + dt.timedelta(days=22)


def make_campaigns(ctx: Ctx) -> Campaigns:
    rng = ctx.rng("campaigns")
    rows = []   # dicts

    def add(cid, name, channel, platform, src, med, utm, s, e, cpc=0.0, weight=0.0, gid=0):
        rows.append(dict(campaign_id=cid, campaign_name=name, channel=channel, platform=platform,
                         utm_source=src, utm_medium=med, utm_campaign=utm,
                         start_date=max(s, ctx.start), end_date=min(e, ctx.end), _cpc=cpc, _w=weight, _gid=gid))

    S, E = ctx.start, ctx.end
    years = list(range(S.year, E.year + 1))
    base_gid = 20_480_000_000 + int(rng.integers(0, 9_999_999)) * 10
    g = [("Search - Brand", 0.6, 0.22), ("Search - Generic", 1.4, 0.33), ("Shopping - All Products", 0.9, 0.30),
         ("Performance Max - Catalog", 0.8, 0.15)]
    for i, (name, cpc, w) in enumerate(g):
        s = S if i < 3 else S + dt.timedelta(days=min(120, ctx.n_obs_days // 6))
        add(str(base_gid + i), name, "paid_search", "google_ads", "google", "cpc",
            name.lower().replace(" - ", "_").replace(" ", "_"), s, E, cpc, w, base_gid + i)
    for j, y in enumerate(years):
        bf = _black_friday(y)
        name = f"Search - Holiday {y}"
        add(str(base_gid + 10 + j), name, "paid_search", "google_ads", "google", "cpc", f"search_holiday_{y}",
            bf - dt.timedelta(days=21), dt.date(y, 12, 24), 1.1, 0.6, base_gid + 10 + j)
    base_meta = 120_210_000_000_000_000 + int(rng.integers(0, 999_999)) * 100
    m = [("Prospecting - Broad", 0.7, 0.40), ("Retargeting - Cart Abandoners", 0.5, 0.30),
         ("Lookalike - Purchasers 1%", 0.6, 0.30)]
    for i, (name, cpc, w) in enumerate(m):
        add(str(base_meta + i), name, "paid_social", "meta", "facebook", "paid_social",
            name.lower().replace(" - ", "_").replace(" ", "_").replace("%", "pct"), S, E, cpc, w)
    for j, y in enumerate(years):
        bf = _black_friday(y)
        add(str(base_meta + 10 + j), f"Holiday Promo {y}", "paid_social", "meta", "instagram", "paid_social",
            f"holiday_promo_{y}", bf - dt.timedelta(days=14), dt.date(y, 12, 22), 0.55, 0.7)
    # e-mail sends: monthly newsletter + promotions (active for 7 days after the send)
    sends = []
    d = dt.date(S.year, S.month, 1)
    while d <= E:
        sends.append((d + dt.timedelta(days=4), f"newsletter_{d.year}_{d.month:02d}", f"Newsletter {d:%B %Y}"))
        if d.month == 3:
            sends.append((d + dt.timedelta(days=19), f"spring_sale_{d.year}", f"Spring Sale {d.year}"))
        if d.month == 7:
            sends.append((d + dt.timedelta(days=9), f"summer_sale_{d.year}", f"Summer Sale {d.year}"))
        if d.month in (2, 5, 8, 10):
            sends.append((d + dt.timedelta(days=14), f"winback_{d.year}_{d.month:02d}", f"Win-back {d:%b %Y}"))
        if d.month == 11:
            bf = _black_friday(d.year)
            sends.append((bf, f"black_friday_{d.year}", f"Black Friday {d.year}"))
            sends.append((bf + dt.timedelta(days=3), f"cyber_monday_{d.year}", f"Cyber Monday {d.year}"))
        d = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    sends.sort()
    for sd, utm, name in sends:
        if S <= sd <= E:
            add(f"em_{utm}", name, "email", "email", "newsletter", "email", utm, sd, sd + dt.timedelta(days=7))
    for name in ["rakuten", "awin", "cj"]:
        add(f"aff_{name}", f"Affiliate - {name.title()}", "affiliate", "affiliate", name, "affiliate",
            f"aff_{name}", S, E)
    add("organic", "(organic)", "organic_search", "none", "google", "organic", "(organic)", S, E)
    add("direct", "(direct)", "direct", "none", "(direct)", "(none)", "(direct)", S, E)
    add("referral", "(referral)", "referral", "none", "referral", "referral", "(referral)", S, E)

    n = len(rows)
    channel = np.array([CH[r["channel"]] for r in rows])
    sday = np.array([(r["start_date"] - S).days for r in rows])
    eday = np.array([(r["end_date"] - S).days for r in rows])
    cpc = np.array([r["_cpc"] for r in rows])
    w = np.array([r["_w"] for r in rows])
    days = np.arange(ctx.n_obs_days)
    active = (days[:, None] >= sday[None, :]) & (days[:, None] <= eday[None, :])
    paid = np.isin(channel, [CH["paid_search"], CH["paid_social"]])
    noise = rng.lognormal(0.0, 0.18, size=(ctx.n_obs_days, n))
    raw = ctx.day_weights()[:, None] * w[None, :] * noise * active * paid[None, :]
    spend = np.zeros_like(raw)
    # budget: spend such that cost per acquired customer (CAC) lands near a realistic level
    for code, cac in ((CH["paid_search"], 34.0), (CH["paid_social"], 30.0)):
        cols = channel == code
        total = ctx.n_people * ACQ_SHARE[code] * cac
        spend[:, cols] = raw[:, cols] / raw[:, cols].sum() * total
    spend = np.round(spend, 2)
    table = pa.table({
        "campaign_id": pa.array([r["campaign_id"] for r in rows], pa.string()),
        "campaign_name": pa.array([r["campaign_name"] for r in rows], pa.string()),
        "channel": pa.array([r["channel"] for r in rows], pa.string()),
        "platform": pa.array([r["platform"] for r in rows], pa.string()),
        "utm_source": pa.array([r["utm_source"] for r in rows], pa.string()),
        "utm_medium": pa.array([r["utm_medium"] for r in rows], pa.string()),
        "utm_campaign": pa.array([r["utm_campaign"] for r in rows], pa.string()),
        "start_date": pa.array([r["start_date"] for r in rows], pa.date32()),
        "end_date": pa.array([r["end_date"] for r in rows], pa.date32()),
    })
    email_idx = np.flatnonzero(channel == CH["email"])
    email_idx = email_idx[np.argsort(sday[email_idx], kind="stable")]
    names = [r["campaign_id"] for r in rows]
    return Campaigns(
        table=table, channel=channel, start_day=sday, end_day=eday,
        paid_cols={c: np.flatnonzero(channel == c) for c in (CH["paid_search"], CH["paid_social"])},
        spend=spend, cpc=cpc, email_idx=email_idx,
        channel_default={CH["organic_search"]: names.index("organic"), CH["direct"]: names.index("direct"),
                         CH["referral"]: names.index("referral")},
        google_ids=np.array([r["_gid"] for r in rows], dtype=np.int64),
    )


def pick_campaign(ctx: Ctx, camps: Campaigns, rng: np.random.Generator, channel: np.ndarray,
                  t_us: np.ndarray) -> np.ndarray:
    """Campaign index for sessions of the given channel at time t (vectorised by channel)."""
    n = len(channel)
    out = np.full(n, -1, dtype=np.int64)
    day = np.clip((t_us - ctx.start_us) // DAY, 0, ctx.n_obs_days - 1)
    for code, cols in camps.paid_cols.items():
        m = np.flatnonzero(channel == code)
        if len(m) == 0:
            continue
        sp = camps.spend[:, cols][day[m]] + 1e-9
        cum = np.cumsum(sp, axis=1)
        u = rng.random(len(m)) * cum[:, -1]
        out[m] = cols[np.minimum((cum < u[:, None]).sum(axis=1), len(cols) - 1)]
    m = np.flatnonzero(channel == CH["email"])
    if len(m):
        sd = camps.start_day[camps.email_idx]
        k = np.searchsorted(sd, day[m], side="right") - 1
        # an older send is sometimes clicked; before the first send, use the first
        k = np.clip(k - (rng.random(len(m)) < 0.15), 0, len(sd) - 1)
        out[m] = camps.email_idx[k]
    m = np.flatnonzero(channel == CH["affiliate"])
    if len(m):
        aff = np.flatnonzero(camps.channel == CH["affiliate"])
        out[m] = aff[rng.choice(len(aff), size=len(m), p=[.5, .3, .2])]
    for code, idx in camps.channel_default.items():
        out[channel == code] = idx
    return out


# ==========================================================================================
# people
@dataclass
class People:
    n: int
    person_id: pa.Array
    first: pa.Array
    last: pa.Array
    email: pa.Array
    email_local: pa.Array
    email_domain: np.ndarray     # index into EMAIL_DOMAINS
    country: np.ndarray          # index into COUNTRIES
    currency: np.ndarray         # index into CURRENCIES
    phone_national: np.ndarray   # int64 national significant number
    phone_e164: pa.Array
    new_phone_national: np.ndarray
    phone_changed_at: np.ndarray  # us or -1
    acq_channel: np.ndarray
    acq_campaign: np.ndarray
    acquired_at: np.ndarray
    lam: np.ndarray
    p: np.ndarray
    nu: np.ndarray
    n_devices: np.ndarray
    opted_out: np.ndarray
    web_user_num: np.ndarray
    first_idx: np.ndarray = None  # name indices
    last_idx: np.ndarray = None


def e164(country: np.ndarray, national: np.ndarray) -> pa.Array:
    prefixes = [PHONE_PLAN[c][0] for c in COUNTRIES]
    return join(take(prefixes, country), pa.array(national.astype(np.int64)).cast(pa.string()))


def make_people(ctx: Ctx, camps: Campaigns) -> People:
    rng = ctx.rng("people")
    N = ctx.n_people
    ch = rng.choice(len(CHANNELS), size=N, p=ACQ_SHARE)
    day = np.zeros(N, dtype=np.int64)
    camp = np.full(N, -1, dtype=np.int64)
    w = ctx.day_weights()
    for code, cols in camps.paid_cols.items():
        m = np.flatnonzero(ch == code)
        flat = camps.spend[:, cols].ravel()
        k = rng.choice(len(flat), size=len(m), p=flat / flat.sum())
        day[m] = k // len(cols)
        camp[m] = cols[k % len(cols)]
    m = np.flatnonzero(~np.isin(ch, list(camps.paid_cols)))
    day[m] = rng.choice(len(w), size=len(m), p=w / w.sum())
    acquired = ctx.start_us + day * DAY + diurnal_offsets(rng, N)
    acquired = np.maximum(acquired, ctx.start_us + HOUR)
    m = camp < 0
    camp[m] = pick_campaign(ctx, camps, rng, ch[m], acquired[m])
    # order people by acquisition time: person ids grow with time
    order = np.argsort(acquired, kind="stable")
    ch, camp, acquired = ch[order], camp[order], acquired[order]

    country = rng.choice(len(COUNTRIES), size=N, p=COUNTRY_P)
    fi = rng.integers(0, len(FIRST_NAMES), size=N)
    li = rng.integers(0, len(LAST_NAMES), size=N)
    first = take(FIRST_NAMES, fi)
    last = take(LAST_NAMES, li)
    dom = rng.choice(len(EMAIL_DOMAINS), size=N, p=EMAIL_DOMAIN_P)
    # local part styles: first.last / firstlast / f.last / first_last + optional number
    style = rng.choice(4, size=N, p=[.5, .2, .15, .15])
    fl, ll = pc.utf8_lower(first), pc.utf8_lower(last)
    f1 = pc.utf8_slice_codeunits(fl, 0, 1)
    local = pc.case_when(pa.StructArray.from_arrays(
        [pa.array(style == 0), pa.array(style == 1), pa.array(style == 2)], ["a", "b", "c"]),
        join(fl, ".", ll), join(fl, ll), join(f1, ".", ll), join(fl, "_", ll))
    has_num = rng.random(N) < 0.35
    num = rng.integers(1, 99, size=N)
    local = pc.if_else(pa.array(has_num), join(local, pa.array(num).cast(pa.string())), local)
    # uniqueness: append a running number to repeats of the same local@domain
    import pandas as pd
    key = pd.Series(np.asarray(local.to_numpy(zero_copy_only=False), dtype=object)) + "@" + pd.Series(dom).astype(str)
    dup = key.groupby(key, sort=False).cumcount().to_numpy()
    local = pc.if_else(pa.array(dup > 0), join(local, ".", pa.array(dup + 100).cast(pa.string())), local)
    email = join(local, "@", take(EMAIL_DOMAINS, dom))

    ndig = np.array([PHONE_PLAN[c][1] for c in COUNTRIES])[country]
    lead = np.where(np.isin(country, [COUNTRIES.index("US"), COUNTRIES.index("CA")]),
                    rng.integers(201, 990, size=N), rng.integers(6, 8, size=N))
    lead_digits = np.where(lead >= 100, 3, 1)
    national = lead * 10 ** (ndig - lead_digits) + rng.integers(0, 10 ** 9, size=N) % (10 ** (ndig - lead_digits))
    new_nat = lead * 10 ** (ndig - lead_digits) + rng.integers(0, 10 ** 9, size=N) % (10 ** (ndig - lead_digits))
    changes = rng.random(N) < 0.05
    change_at = np.where(changes, acquired + (rng.random(N) * (ctx.end_excl_us - acquired)).astype(np.int64), -1)

    lam = rng.gamma(BGNBD["r"], 1.0 / BGNBD["alpha"], size=N)
    p = rng.beta(BGNBD["a"], BGNBD["b"], size=N)
    nu = rng.gamma(GG["q"], 1.0 / GG["gamma"], size=N)
    ndev = rng.choice([1, 2, 3], size=N, p=[.55, .33, .12])
    opted = rng.random(N) < 0.14
    web_user = 100_000 + rng.permutation(N * 3)[:N]   # shop login ids u_<n>, not in person order
    return People(
        n=N, person_id=padded_ids("p_", np.arange(1, N + 1), 7), first=first, last=last, email=email,
        email_local=local, email_domain=dom, country=country, currency=COUNTRY_CUR_CODE[country],
        phone_national=national, phone_e164=e164(country, national), new_phone_national=new_nat,
        phone_changed_at=change_at, acq_channel=ch, acq_campaign=camp, acquired_at=acquired,
        lam=lam, p=p, nu=nu, n_devices=ndev, opted_out=opted, web_user_num=web_user,
        first_idx=fi, last_idx=li)


# ==========================================================================================
# orders (through end + horizon)
@dataclass
class Orders:
    n: int
    person: np.ndarray
    ordered_at: np.ndarray
    seq: np.ndarray            # 0 = the person's first order
    order_id: pa.Array
    currency: np.ndarray
    amount_minor: np.ndarray
    amount_usd: np.ndarray
    same_session_as_acq: np.ndarray
    channel: np.ndarray
    campaign: np.ndarray
    failed_first: np.ndarray   # first payment attempt failed
    is_failed: np.ndarray      # abandoned after the failed attempt (no revenue)
    retry_gap_us: np.ndarray
    refunded_minor: np.ndarray
    refunded_at: np.ndarray    # -1 = none
    refund_reason: np.ndarray
    tracked: np.ndarray
    in_obs: np.ndarray
    dropped_out_at: np.ndarray  # per person, -1 = not within the simulated time


def make_orders(ctx: Ctx, camps: Campaigns, ppl: People) -> Orders:
    rng = ctx.rng("orders")
    N = ppl.n
    same = rng.random(N) < 0.35
    delay = np.where(same, rng.integers(3 * MINUTE, 25 * MINUTE, size=N),
                     HOUR + rng.exponential(6 * DAY, size=N).astype(np.int64))
    t1 = ppl.acquired_at + delay
    has_first = t1 < ctx.sim_end_us
    W = np.clip((ctx.sim_end_us - t1) / DAY, 0, None)
    K = rng.geometric(ppl.p)                      # purchases until (and including) the drop-out one
    ncand = np.where(has_first, rng.poisson(ppl.lam * W), 0)
    nrep = np.minimum(ncand, K - 1)
    # repeat purchases: first nrep order statistics of ncand uniforms on (t1, sim_end)
    rep_person = np.repeat(np.arange(N), ncand)
    u = rng.random(len(rep_person))
    key = rep_person + u                           # sort by person, then time
    o = np.argsort(key, kind="stable")
    rep_person, u = rep_person[o], u[o]
    rank = rank_in_group(rep_person)
    keep = rank < nrep[rep_person]
    rep_person, u = rep_person[keep], u[keep]
    rep_t = t1[rep_person] + (u * W[rep_person] * DAY).astype(np.int64)
    # diurnal time of day for repeat orders (never before the first order)
    rep_t = (rep_t // DAY) * DAY + diurnal_offsets(rng, len(rep_t))
    rep_t = np.maximum(rep_t, t1[rep_person] + HOUR)
    rep_t = np.minimum(rep_t, ctx.sim_end_us - 1)
    fp = np.flatnonzero(has_first)
    person = np.concatenate([fp, rep_person])
    t = np.concatenate([t1[fp], rep_t])
    o = np.lexsort((t, person))
    person, t = person[o], t[o]
    seq = rank_in_group(person)
    # drop-out: right after the K-th purchase, if that purchase happened in simulated time
    n_orders = np.bincount(person, minlength=N)
    died = has_first & (K <= n_orders)
    first_pos = np.concatenate([[0], np.cumsum(n_orders)[:-1]])
    dropped = np.full(N, -1, dtype=np.int64)
    dropped[died] = t[first_pos[died] + K[died] - 1]

    # global order ids in time order
    o = np.argsort(t, kind="stable")
    person, t, seq = person[o], t[o], seq[o]
    n = len(person)
    order_id = padded_ids("ord_", np.arange(1, n + 1) + 1000, 8)
    cur = ppl.currency[person]
    usd = rng.gamma(GG["p"], 1.0 / ppl.nu[person])
    usd = np.maximum(usd, 6.0)
    minor = np.round(usd / CUR_FX[cur] * 100).astype(np.int64)
    minor = (minor // 100) * 100 + np.where(rng.random(n) < 0.6, 99, minor % 100)   # price points .99
    amount_usd = minor * CUR_FX[cur] / 100.0
    same_o = (seq == 0) & same[person]
    # channel of the purchase session (last touch)
    ch = rng.choice(len(CHANNELS), size=n, p=RETURN_SHARE)
    first_sep = (seq == 0) & ~same[person]
    keep_acq = same_o | (first_sep & (rng.random(n) < 0.5))
    ch = np.where(keep_acq, ppl.acq_channel[person], ch)
    camp = np.full(n, -1, dtype=np.int64)
    camp[keep_acq] = ppl.acq_campaign[person[keep_acq]]
    m = ~keep_acq
    camp[m] = pick_campaign(ctx, camps, rng, ch[m], t[m])
    # payments: ~3% first attempts fail; 65% of those retried and succeed, the rest abandoned
    failed_first = rng.random(n) < 0.03
    is_failed = failed_first & (rng.random(n) < 0.35)
    retry_gap = rng.integers(2 * MINUTE, 40 * MINUTE, size=n)
    # refunds for ~5% of paid orders, 2-20 days later, 30% partial
    refunded = ~is_failed & (rng.random(n) < 0.05)
    partial = rng.random(n) < 0.3
    frac = np.where(partial, rng.uniform(0.15, 0.8, size=n), 1.0)
    ref_minor = np.where(refunded, np.maximum(1, np.round(minor * frac)).astype(np.int64), 0)
    ref_at = np.where(refunded, t + rng.integers(2 * DAY, 20 * DAY, size=n), -1)
    reason = rng.choice(3, size=n, p=[.8, .12, .08])   # requested_by_customer, duplicate, fraudulent
    tracked = ~is_failed & (rng.random(n) >= 0.12)
    in_obs = t < ctx.end_excl_us
    return Orders(n=n, person=person, ordered_at=t, seq=seq, order_id=order_id, currency=cur,
                  amount_minor=minor, amount_usd=amount_usd, same_session_as_acq=same_o, channel=ch,
                  campaign=camp, failed_first=failed_first, is_failed=is_failed, retry_gap_us=retry_gap,
                  refunded_minor=ref_minor, refunded_at=ref_at, refund_reason=reason, tracked=tracked,
                  in_obs=in_obs, dropped_out_at=dropped)
