"""GA4 sessions and events of the sandbox world (fully vectorised).

Devices: each person has 1-3 (one ``user_pseudo_id`` each); anonymous visitors have one device
and one or a few sessions and never buy. Sessions: the acquisition visit, a purchase session per
observed order (the checkout of failed/untracked orders too), browsing sessions around orders,
and anonymous sessions whose paid share is driven by the daily ad spend.

Event template of a session (in this order):
``[first_visit] session_start page_view(landing) (page_view view_item)*n page_view*m [login]
add_to_cart*k [begin_checkout] [purchase]``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.world_people import (CH, CHANNELS, COUNTRIES, COUNTRY_P, CURRENCIES, RETURN_SHARE, ACQ_SHARE,
                                  Campaigns, Ctx, Orders, People, pick_campaign)
from sandbox.world_util import (dict_col, ALNUM, DAY, HEX, HOUR, MINUTE, US, diurnal_offsets, join, null_where,
                                random_strings, rank_in_group, segment_cumsum, take, ts_array, number_strings,
                                digit_matrix, strings_from_matrix)

SITE = "https://shop.retailpulse.example"
PLATFORMS = ["WEB", "IOS", "ANDROID"]
CATEGORIES = ["desktop", "mobile", "tablet"]
OSES = ["Windows", "Macintosh", "iOS", "Android", "Linux"]

# event codes (template order)
EV_NAMES = ["first_visit", "session_start", "page_view", "view_item", "login", "add_to_cart",
            "begin_checkout", "purchase"]
FV, SS, PV, VI, LOGIN, ATC, BC, PUR = range(8)
# slots of the template: code, and whether the slot is the (page_view, view_item) pair slot
SLOTS = ["ss", "landing", "pair", "other", "login", "atc", "bc", "purchase"]

# catalog
_ADJ = ["Merino", "Linen", "Organic", "Classic", "Everyday", "Alpine", "Coastal", "Vintage", "Urban", "Cozy"]
_NOUN = [("Crew Sweater", 79), ("Oxford Shirt", 59), ("Chino Pants", 69), ("Rain Jacket", 139), ("Beanie", 25),
         ("Tote Bag", 35), ("Running Socks", 15), ("Canvas Sneakers", 85), ("Wool Scarf", 45),
         ("Graphic Tee", 29), ("Hoodie", 65), ("Water Bottle", 22), ("Leather Wallet", 55), ("Sunglasses", 95),
         ("Desk Lamp", 75)]
CATALOG_NAMES = [f"{a} {n}" for a in _ADJ for n, _ in _NOUN]
CATALOG_PRICE = np.array([p * (0.85 + 0.05 * (i % 7)) for i, (_, p) in enumerate([(a, p) for a in _ADJ for _, p in _NOUN])])
CATALOG_PRICE = np.round(CATALOG_PRICE) - 0.01
CATALOG_SKU = [f"SKU-{10001 + i}" for i in range(len(CATALOG_NAMES))]
CATALOG_SLUG = [n.lower().replace(" ", "-") for n in CATALOG_NAMES]
COLLECTIONS = ["new-arrivals", "sale", "men", "women", "accessories", "home"]
REFERRAL_SITES = ["blog.styleguide.example", "www.reddit.com", "news.ycombinator.com", "www.pinterest.com",
                  "giftideas.example.org"]


@dataclass
class GA4Result:
    events: pa.Table
    device_person: np.ndarray        # per device: person index or -1
    device_pseudo: pa.Array          # per device: user_pseudo_id
    device_seen: np.ndarray          # per device: appears in events
    paid_sessions: np.ndarray        # (n_days, n_campaigns) sessions through ad clicks (incl. untracked)
    paid_conversions: np.ndarray     # (n_days, n_campaigns) orders whose purchase session came via the campaign
    n_sessions: int
    n_events: int = 0
    purchase_orders: np.ndarray = None   # order indices with a GA4 purchase event
    uid_persons: np.ndarray = None       # person indices seen with a user_id


def _pages():
    """Page vocabulary: path and title; returns (paths, titles, index helpers)."""
    paths = ["/"] + [f"/collections/{c}" for c in COLLECTIONS] + [f"/products/{s}" for s in CATALOG_SLUG] + \
        ["/cart", "/checkout", "/checkout/thank-you", "/account/login", "/search", "/account/orders"]
    titles = ["RetailPulse Shop"] + [f"{c.replace('-', ' ').title()} | RetailPulse Shop" for c in COLLECTIONS] + \
        [f"{n} | RetailPulse Shop" for n in CATALOG_NAMES] + \
        ["Cart", "Checkout", "Thank you for your order", "Log in", "Search", "Your orders"]
    screens = ["Home"] + ["Collection"] * len(COLLECTIONS) + ["Product"] * len(CATALOG_NAMES) + \
        ["Cart", "Checkout", "Order Confirmation", "Login", "Search", "Orders"]
    base = 1 + len(COLLECTIONS)
    idx = dict(home=0, coll0=1, prod0=base, cart=base + len(CATALOG_NAMES))
    idx.update(checkout=idx["cart"] + 1, thanks=idx["cart"] + 2, login=idx["cart"] + 3, search=idx["cart"] + 4,
               orders=idx["cart"] + 5)
    return paths, titles, screens, idx


def _mark(label: str) -> None:
    if os.environ.get("RETAILPULSE_WORLD_PROFILE"):
        import resource
        now = time.perf_counter()
        print(f"  ga4 {label:32s} {now - _T[0]:7.2f}s  maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB",
              file=sys.stderr, flush=True)
        _T[0] = now


_T = [time.perf_counter()]


def make_ga4(ctx: Ctx, camps: Campaigns, ppl: People, ords: Orders, sink=None) -> GA4Result:
    """Simulate GA4. Events are built in time-ordered chunks; with ``sink`` each chunk table is
    handed to it (and not kept), else ``GA4Result.events`` holds the whole table."""
    rng = ctx.rng("ga4")
    N = ppl.n
    _mark("person devices")
    # ---------------------------------------------------------------- person devices
    ndev = ppl.n_devices
    dev_person = np.repeat(np.arange(N), ndev)
    dev_first = np.concatenate([[0], np.cumsum(ndev)[:-1]])          # device index of person's device 0
    dev_k = np.arange(len(dev_person)) - dev_first[dev_person]
    n_pdev = len(dev_person)
    plat = np.where(dev_k == 0, rng.choice(3, size=n_pdev, p=[.8, .12, .08]),
                    rng.choice(3, size=n_pdev, p=[.5, .3, .2]))

    _mark("person sessions")
    # ---------------------------------------------------------------- person sessions
    S_person, S_dev, S_start, S_ch, S_camp, S_kind, S_order, S_login = [], [], [], [], [], [], [], []
    end = ctx.end_excl_us
    has_acq = ppl.acquired_at < end
    # purchase sessions of observed orders
    oi = np.flatnonzero(ords.in_obs)
    o_person = ords.person[oi]
    same = ords.same_session_as_acq[oi]
    # acquisition sessions
    acq_p = np.flatnonzero(has_acq)
    acq_order = np.full(N, -1, dtype=np.int64)
    acq_order[o_person[same]] = oi[same]
    S_person.append(acq_p); S_dev.append(dev_first[acq_p]); S_start.append(ppl.acquired_at[acq_p])
    S_ch.append(ppl.acq_channel[acq_p]); S_camp.append(ppl.acq_campaign[acq_p])
    S_kind.append(np.where(acq_order[acq_p] >= 0, 2, 1)); S_order.append(acq_order[acq_p])
    S_login.append(acq_order[acq_p] >= 0)
    # first order time per person (observed)
    first_order_t = np.full(N, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_order_t, o_person, ords.ordered_at[oi])
    po = oi[~same]
    pp = ords.person[po]
    S_person.append(pp); S_dev.append(np.full(len(po), -1)); S_start.append(ords.ordered_at[po])
    S_ch.append(ords.channel[po]); S_camp.append(ords.campaign[po]); S_kind.append(np.full(len(po), 2))
    S_order.append(po); S_login.append(rng.random(len(po)) < 0.85)
    # browsing before each order (0-14 days) and some aimless browsing after acquisition
    nb = rng.poisson(0.6, size=len(oi)) * ~same
    bp = np.repeat(o_person, nb)
    bt_order = np.repeat(ords.ordered_at[oi], nb)
    lo = np.maximum(ppl.acquired_at[bp] + 10 * MINUTE, bt_order - 14 * DAY)
    bt = lo + (rng.random(len(bp)) * np.maximum(bt_order - lo, 0)).astype(np.int64)
    na = rng.poisson(0.5, size=N) * has_acq
    ap = np.repeat(np.arange(N), na)
    at = ppl.acquired_at[ap] + HOUR + rng.exponential(45 * DAY, size=len(ap)).astype(np.int64)
    bp = np.concatenate([bp, ap]); bt = np.concatenate([bt, at])
    keepb = bt < end
    bp, bt = bp[keepb], bt[keepb]
    pre_first = bt < first_order_t[bp]
    bch = rng.choice(len(CHANNELS), size=len(bp), p=RETURN_SHARE)
    use_acq = pre_first & (rng.random(len(bp)) < 0.5)
    bch = np.where(use_acq, ppl.acq_channel[bp], bch)
    bcamp = pick_campaign(ctx, camps, rng, bch, bt)
    bcamp = np.where(use_acq, ppl.acq_campaign[bp], bcamp)
    S_person.append(bp); S_dev.append(np.full(len(bp), -1)); S_start.append(bt); S_ch.append(bch)
    S_camp.append(bcamp); S_kind.append(np.full(len(bp), 1)); S_order.append(np.full(len(bp), -1))
    S_login.append(~pre_first & (rng.random(len(bp)) < 0.25))

    s_person = np.concatenate(S_person); s_dev = np.concatenate(S_dev); s_start = np.concatenate(S_start)
    s_ch = np.concatenate(S_ch); s_camp = np.concatenate(S_camp); s_kind = np.concatenate(S_kind)
    s_order = np.concatenate(S_order); s_login = np.concatenate(S_login)
    # device choice for non-acquisition person sessions
    m = s_dev < 0
    nd = ndev[s_person[m]]
    wts = np.array([[1, 0, 0], [.6, .4, 0], [.5, .3, .2]])
    cum = np.cumsum(wts[nd - 1], axis=1)
    k = (rng.random(m.sum())[:, None] > cum).sum(axis=1)
    s_dev[m] = dev_first[s_person[m]] + np.minimum(k, nd - 1)

    _mark("anonymous devices")
    # ---------------------------------------------------------------- anonymous devices
    af = ctx.anon_factor
    days = np.arange(ctx.n_obs_days)
    a_day, a_ch, a_camp = [], [], []
    for code, cols in camps.paid_cols.items():
        lam = camps.spend[:, cols] / camps.cpc[cols][None, :] * 0.17 * af
        cnt = rng.poisson(lam)
        dd, cc = np.nonzero(cnt)
        rep = cnt[dd, cc]
        a_day.append(np.repeat(dd, rep)); a_camp.append(np.repeat(cols[cc], rep))
        a_ch.append(np.full(rep.sum(), code))
    w = ctx.day_weights()
    per_acq = {CH["organic_search"]: 3.0, CH["direct"]: 2.0, CH["referral"]: 3.0, CH["email"]: 1.0,
               CH["affiliate"]: 2.5}
    for code, k_ in per_acq.items():
        tot = rng.poisson(N * ACQ_SHARE[code] * k_ * af)
        dd = rng.choice(len(w), size=tot, p=w / w.sum())
        a_day.append(dd); a_ch.append(np.full(tot, code)); a_camp.append(np.full(tot, -1))
    a_day = np.concatenate(a_day); a_ch = np.concatenate(a_ch); a_camp = np.concatenate(a_camp)
    n_anon = len(a_day)
    a_t = ctx.start_us + a_day * DAY + diurnal_offsets(rng, n_anon)
    mm = a_camp < 0
    a_camp[mm] = pick_campaign(ctx, camps, rng, a_ch[mm], a_t[mm])
    a_dev = n_pdev + np.arange(n_anon)
    # a few anonymous visitors come back
    extra = rng.geometric(0.76, size=n_anon) - 1
    e_dev = np.repeat(a_dev, extra)
    e_gap = rng.exponential(12 * DAY, size=len(e_dev)).astype(np.int64)
    e_t = np.repeat(a_t, extra) + segment_cumsum(e_gap, extra)
    ok = e_t < end
    e_dev, e_t = e_dev[ok], e_t[ok]
    e_ch = rng.choice(len(CHANNELS), size=len(e_dev), p=RETURN_SHARE)
    e_camp = pick_campaign(ctx, camps, rng, e_ch, e_t)
    a_plat = rng.choice(3, size=n_anon, p=[.88, .07, .05])

    _mark("all sessions")
    # ---------------------------------------------------------------- all sessions
    n_dev = n_pdev + n_anon
    dev_person_all = np.concatenate([dev_person, np.full(n_anon, -1)])
    dev_plat = np.concatenate([plat, a_plat])
    cat_web = rng.choice(3, size=n_dev, p=[.52, .43, .05])
    dev_cat = np.where(dev_plat == 0, cat_web, 1)
    os_ = np.where(dev_cat == 0, np.where(rng.random(n_dev) < .68, 0, 1),
                   np.where(rng.random(n_dev) < (np.where(dev_cat == 2, .7, .55)), 2, 3))
    os_ = np.where(dev_plat == 1, 2, np.where(dev_plat == 2, 3, os_))
    os_ = np.where((dev_cat == 0) & (rng.random(n_dev) < 0.03), 4, os_)
    dev_country = np.concatenate([ppl.country[dev_person], rng.choice(len(COUNTRIES), size=n_anon, p=COUNTRY_P)])

    s_person = np.concatenate([s_person, np.full(n_anon + len(e_dev), -1)])
    s_dev = np.concatenate([s_dev, a_dev, e_dev])
    s_start = np.concatenate([s_start, a_t, e_t])
    s_ch = np.concatenate([s_ch, a_ch, e_ch])
    s_camp = np.concatenate([s_camp, a_camp, e_camp])
    s_kind = np.concatenate([s_kind, np.zeros(n_anon + len(e_dev), dtype=np.int64)])
    s_order = np.concatenate([s_order, np.full(n_anon + len(e_dev), -1)])
    s_login = np.concatenate([s_login, np.zeros(n_anon + len(e_dev), dtype=bool)])
    ns = len(s_dev)
    is_pur = s_kind == 2
    # whole purchase session invisible for half of the untracked orders (blocked tracking)
    s_order_c = np.where(is_pur, s_order, 0)
    untracked = is_pur & ~ords.tracked[s_order_c] & ~ords.is_failed[s_order_c]
    s_drop = untracked & (rng.random(ns) < 0.5)

    _mark("events per slot")
    # ---------------------------------------------------------------- events per slot (session level)
    kind = s_kind
    n_prod = np.where(kind == 0, rng.poisson(0.55, ns), np.where(kind == 1, rng.poisson(1.2, ns),
                                                                  1 + rng.poisson(0.8, ns)))
    n_other = np.where(kind == 0, rng.poisson(0.35, ns), np.where(kind == 1, rng.poisson(0.7, ns),
                                                                   rng.poisson(0.9, ns)))
    u = rng.random(ns)
    n_atc = np.where(kind == 2, 1 + (rng.random(ns) < .25),
                     ((n_prod > 0) & (u < np.where(kind == 0, .10, .28))).astype(np.int64))
    n_bc = np.where(kind == 2, 1, ((n_atc > 0) & (rng.random(ns) < np.where(kind == 0, .2, .3))).astype(np.int64))
    n_pur = (is_pur & ords.tracked[s_order_c]).astype(np.int64)
    counts = np.stack([np.ones(ns, np.int64), np.ones(ns, np.int64), 2 * n_prod, n_other,
                       s_login.astype(np.int64), n_atc, n_bc, n_pur], axis=1).astype(np.int32)
    n_ev_s = counts.sum(axis=1).astype(np.int64)
    ex = _Expander(counts, ctx.seed)
    # purchase sessions: begin_checkout lands 60 s before the order time; login offsets for later
    bc_off = np.zeros(ns, dtype=np.int64)
    login_off = np.zeros(ns, dtype=np.int64)
    need = np.flatnonzero(is_pur | s_login)
    for sel in _chunks_by_events(need, n_ev_s, CHUNK_EVENTS):
        e = ex.expand(sel)
        m = e["slot"] == 6
        bc_off[e["sess"][m]] = e["offs"][m]
        m = e["slot"] == 4
        login_off[e["sess"][m]] = e["offs"][m]
    s_start = np.where(is_pur, ords.ordered_at[s_order_c] - 60 * US - bc_off, s_start)
    # the acquisition visit that is also the first purchase defines acquired_at
    n_acq = len(acq_p)
    acq_is_pur = is_pur[:n_acq]
    ppl.acquired_at[acq_p[acq_is_pur]] = s_start[:n_acq][acq_is_pur]

    # paid clicks (all sessions through a paid campaign, seen by GA4 or not) and platform conversions
    s_day = (s_start - ctx.start_us) // DAY
    in_range = (s_day >= 0) & (s_day < ctx.n_obs_days) & (s_camp >= 0)
    paid = in_range & np.isin(s_ch, [CH["paid_search"], CH["paid_social"]])
    n_c = camps.channel.shape[0]
    paid_sessions = np.bincount(s_day[paid] * n_c + s_camp[paid], minlength=ctx.n_obs_days * n_c
                                ).reshape(ctx.n_obs_days, n_c)
    conv = paid & is_pur & ~ords.is_failed[s_order_c]
    paid_conv = np.bincount(s_day[conv] * n_c + s_camp[conv], minlength=ctx.n_obs_days * n_c
                            ).reshape(ctx.n_obs_days, n_c)

    _mark("keep visible sessions")
    # ---------------------------------------------------------------- keep visible sessions
    keep_s = ~s_drop & (s_start < end) & (s_start >= ctx.start_us - DAY)
    # order sessions by device and time: session number, first visit, login state
    so = np.lexsort((s_start, s_dev))
    so = so[keep_s[so]]
    dev_sorted = s_dev[so]
    sess_num = np.zeros(ns, dtype=np.int64)
    sess_num[so] = rank_in_group(dev_sorted) + 1
    sid = s_start // US                                  # ga_session_id = session start in seconds
    pos_sorted = np.arange(len(so))
    lp = np.where(s_login[so], pos_sorted, np.iinfo(np.int64).max)
    if len(so):
        new_dev = np.r_[True, dev_sorted[1:] != dev_sorted[:-1]]
        first_login = np.minimum.reduceat(lp, np.flatnonzero(new_dev))
        fl = first_login[np.cumsum(new_dev) - 1]
    else:
        fl = np.zeros(0, dtype=np.int64)
    state = np.zeros(ns, dtype=np.int8)      # 0 anonymous, 1 first login in this session, 2 logged in before
    state[so] = np.where(pos_sorted > fl, 2, np.where(pos_sorted == fl, 1, 0))
    fv = np.zeros(ns, dtype=bool)            # first visit = device's first visible session
    fv[so] = sess_num[so] == 1
    # device facts: first seen (its first session_start), first login event time
    n_dev_all = n_dev
    first_seen = np.full(n_dev_all, np.iinfo(np.int64).max, dtype=np.int64)
    if len(so):
        first_seen[dev_sorted[new_dev]] = s_start[so][new_dev]
    seen = first_seen < np.iinfo(np.int64).max
    first_seen = np.where(seen, first_seen, ctx.start_us)
    login_ts = np.full(n_dev_all, np.iinfo(np.int64).max, dtype=np.int64)
    st1 = np.flatnonzero(state == 1)
    login_ts[s_dev[st1]] = s_start[st1] + login_off[st1]

    _mark("vocabularies")
    # ---------------------------------------------------------------- session-level vocabularies
    paths, titles, screens, P = _pages()
    n_cat = len(CATALOG_NAMES)
    u = rng.random(ns)
    landing = np.where(u < 0.4, P["home"], np.where(u < 0.75, P["prod0"] + rng.integers(0, n_cat, ns),
                                                    P["coll0"] + rng.integers(0, len(COLLECTIONS), ns)))
    ct = camps.table
    c_src = np.array(ct.column("utm_source").to_pylist(), dtype=object)
    src_vocab = sorted(set(c_src.tolist()) | {"bing", "instagram"} | set(REFERRAL_SITES))
    sv = {s: i for i, s in enumerate(src_vocab)}
    camp_src = np.array([sv[s] for s in c_src])
    s_src = camp_src[np.maximum(s_camp, 0)]
    rs = rng.random(ns)
    s_src = np.where((s_ch == CH["organic_search"]) & (rs < 0.14), sv["bing"], s_src)
    s_src = np.where((s_ch == CH["paid_social"]) & (rs < 0.35), sv["instagram"], s_src)
    ref_codes = np.array([sv[s] for s in REFERRAL_SITES])
    s_src = np.where(s_ch == CH["referral"], ref_codes[rng.integers(0, len(REFERRAL_SITES), ns)], s_src)
    referrer_of_src = {"google": "https://www.google.com/", "bing": "https://www.bing.com/",
                       "facebook": "https://l.facebook.com/", "instagram": "https://l.instagram.com/",
                       "rakuten": "https://www.rakuten.com/", "awin": "https://www.awin1.com/",
                       "cj": "https://www.cj.com/"}
    for s_ in REFERRAL_SITES:
        referrer_of_src[s_] = f"https://{s_}/"
    src_ref = pa.array([referrer_of_src.get(s) for s in src_vocab], pa.string())
    is_gclid = s_ch == CH["paid_search"]
    is_fbclid = s_ch == CH["paid_social"]
    # pseudo ids: web "<random>.<first seen seconds>", app: 32 hex
    rnd = rng.integers(100_000_000, 2_147_483_647, n_dev_all)
    web_ids = join(number_strings(rnd), ".", number_strings(first_seen // US))
    app_ids = random_strings(rng, n_dev_all, 32, HEX)
    pseudo = pc.if_else(pa.array(dev_plat == 0), web_ids, app_ids)
    # click ids per session (null outside paid sessions)
    g_pos = np.cumsum(is_gclid) - 1            # position among paid-search sessions
    f_pos = np.cumsum(is_fbclid) - 1
    gclid_s = random_strings(rng, int(is_gclid.sum()), 40, ALNUM, prefix="Cj0KCQiA")
    fbclid_s = random_strings(rng, int(is_fbclid.sum()), 56, ALNUM, prefix="IwAR")
    # landing URL per session: the click id / utm query string
    c_med = ct.column("utm_medium").combine_chunks()
    c_utm = ct.column("utm_campaign").combine_chunks()
    has_utm = np.isin(s_ch, [CH["email"], CH["affiliate"], CH["paid_social"]])
    pair = s_src * len(c_med) + np.maximum(s_camp, 0)
    upairs = np.unique(pair[has_utm])
    utm_vocab = join("?utm_source=", pa.array(src_vocab, pa.string()).take(pa.array(upairs // len(c_med))),
                     "&utm_medium=", c_med.take(pa.array(upairs % len(c_med))),
                     "&utm_campaign=", c_utm.take(pa.array(upairs % len(c_med))))
    utm_vocab = pa.concat_arrays([utm_vocab, pa.array([""], pa.string())])
    # only sessions with a query string get their own landing URL; the others use the page vocabulary
    has_q = has_utm | is_gclid | is_fbclid
    qs = np.flatnonzero(has_q)
    q_pos = np.cumsum(has_q) - 1
    q = utm_vocab.take(pa.array(np.where(has_utm[qs], np.searchsorted(upairs, pair[qs]), len(upairs))))
    gq = pa.array(is_gclid[qs])
    q = pc.if_else(gq, join("?gclid=", gclid_s.take(pa.array(np.maximum(g_pos[qs], 0), mask=~is_gclid[qs]))), q)
    q = pc.if_else(pa.array(is_fbclid[qs]),
                   join(q, "&fbclid=", fbclid_s.take(pa.array(np.maximum(f_pos[qs], 0), mask=~is_fbclid[qs]))), q)
    url_vocab = join(SITE, pa.array(paths, pa.string()))
    n_pages = len(paths)
    loc_vocab = pa.concat_arrays([url_vocab, join(url_vocab.take(pa.array(landing[qs])), q)])
    sess_loc = np.where(has_q, n_pages + q_pos, landing)      # landing URL index per session
    title_vocab = pa.array(titles + screens, pa.string())
    ref_vocab = pa.concat_arrays([url_vocab, src_ref])
    uid_vocab = join("u_", number_strings(ppl.web_user_num))
    cur_up = pa.array([c.upper() for c in CURRENCIES], pa.string())
    item_vocab = _items_json(ctx.rng("ga4-items"), ords)
    # visibility: 5% of sessions arrive 1-3 days late (apps more often)
    late = rng.random(ns) < np.where(dev_plat[s_dev] == 0, 0.04, 0.10)
    delay = np.where(late, rng.integers(DAY, 3 * DAY, ns), rng.integers(2 * MINUTE, 4 * HOUR, ns))
    import datetime as _dt
    d0 = (int(s_start[keep_s].min()) - ctx.start_us) // DAY if keep_s.any() else 0
    day_vocab = pa.array([(ctx.start + _dt.timedelta(days=int(d0 + i))).strftime("%Y%m%d")
                          for i in range(ctx.n_obs_days + 8 - d0)], pa.string())
    other_pages = np.array([P["home"], P["search"], P["cart"], P["coll0"], P["coll0"] + 1, P["coll0"] + 2,
                            P["orders"]])
    slot_page = np.array([-1, -1, -2, -3, P["login"], -2, P["checkout"], P["thanks"]])
    e_dev_person = dev_person_all

    _mark("events")
    # ---------------------------------------------------------------- events, in time-ordered chunks
    order_s = so[np.argsort(s_start[so], kind="stable")]          # visible sessions by start time
    chunks = []
    n_events = 0
    pur_orders, uid_p = [], []
    carry = np.zeros(0, dtype=np.int64)
    parts = list(_chunks_by_events(order_s, n_ev_s, CHUNK_EVENTS))
    for k, sel in enumerate(parts):
        t_lo = s_start[sel[0]] if k else np.iinfo(np.int64).min
        t_hi = s_start[parts[k + 1][0]] if k + 1 < len(parts) else np.iinfo(np.int64).max
        todo = np.concatenate([carry, sel])
        e = ex.expand(todo)
        ev_s, slot, pos, offs = e["sess"], e["slot"], e["pos"], e["offs"]
        code = np.array([SS, PV, PV, PV, LOGIN, ATC, BC, PUR])[slot]
        code = np.where(e["is_vi"], VI, code)
        # drop login events of already-logged-in sessions; add first_visit (a copy of session_start)
        keep = ~((code == LOGIN) & (state[ev_s] == 2))
        fv_i = np.flatnonzero((code == SS) & fv[ev_s])
        ii = np.concatenate([np.flatnonzero(keep), fv_i])
        is_fv = np.concatenate([np.zeros(len(ii) - len(fv_i), bool), np.ones(len(fv_i), bool)])
        epos = np.where(is_fv, -1, pos[ii])
        es = ev_s[ii]
        # session order (for engagement time and referrers): by session, then position
        o = np.lexsort((epos, es))
        ii, is_fv, epos, es = ii[o], is_fv[o], epos[o], es[o]
        ts = s_start[es] + offs[ii]
        ecode = np.where(is_fv, FV, code[ii])
        eslot = slot[ii]
        # pages
        prod = e["prod"][ii]
        other_pg = other_pages[e["other"][ii] % len(other_pages)]
        sp = slot_page[eslot]
        page = np.where(sp >= 0, sp, np.where(sp == -1, landing[es], np.where(sp == -2, P["prod0"] + prod, other_pg)))
        is_pv = ecode == PV
        pv_i = np.flatnonzero(is_pv)
        prev_same = np.r_[False, es[pv_i[1:]] == es[pv_i[:-1]]] if len(pv_i) else np.zeros(0, bool)
        prev_page = np.full(len(pv_i), -1)
        if len(pv_i):
            prev_page[1:] = page[pv_i[:-1]]
        prev_page = np.where(prev_same, prev_page, -1)
        ref_pv = np.full(len(ii), -2)
        ref_pv[pv_i] = prev_page
        nxt_same = np.r_[es[1:] == es[:-1], False] if len(es) else np.zeros(0, bool)
        nxt_ts = np.r_[ts[1:], ts[-1:]] if len(es) else ts
        engaged = np.where(nxt_same, nxt_ts - ts, e["linger"][ii]) // 1000
        # this chunk's time window only; the rest of long sessions goes with the next chunk
        win = (ts >= t_lo) & (ts < t_hi)
        carry = np.unique(es[ts >= t_hi])
        o = np.flatnonzero(win)
        o = o[np.lexsort((epos[o], es[o], ts[o]))]
        chunk, po, up = _event_table(
            o, ts, es, ecode, eslot, page, ref_pv, engaged, is_pv, is_fv, epos,
            sess_loc=sess_loc, s_ch=s_ch, s_camp=s_camp, s_src=s_src, s_dev=s_dev, s_order_c=s_order_c, sid=sid, sess_num=sess_num,
            state=state, delay=delay, g_pos=g_pos, f_pos=f_pos, is_gclid=is_gclid, is_fbclid=is_fbclid,
            dev_plat=dev_plat, dev_cat=dev_cat, os_=os_, dev_country=dev_country, dev_person=e_dev_person,
            login_ts=login_ts, ords=ords, vocab=dict(
                day=day_vocab, d0=d0, pseudo=pseudo, loc=loc_vocab, title=title_vocab, ref=ref_vocab,
                uid=uid_vocab, cur=cur_up, items=item_vocab, src=src_vocab, med=c_med, utm=c_utm,
                gclid=gclid_s, fbclid=fbclid_s, n_pages=n_pages), start_us=ctx.start_us)
        n_events += chunk.num_rows
        pur_orders.append(po)
        uid_p.append(np.unique(up))
        if sink is not None:
            sink(chunk)
        else:
            chunks.append(chunk)
    table = None
    if sink is None:
        table = pa.concat_tables(chunks) if chunks else GA4_SCHEMA.empty_table()
    _mark("table")
    return GA4Result(events=table, device_person=dev_person_all, device_pseudo=pseudo, device_seen=seen,
                     paid_sessions=paid_sessions, paid_conversions=paid_conv, n_sessions=int(keep_s.sum()),
                     n_events=n_events, purchase_orders=np.concatenate(pur_orders) if pur_orders else np.zeros(0, int),
                     uid_persons=np.unique(np.concatenate(uid_p)) if uid_p else np.zeros(0, int))


CHUNK_EVENTS = 2_000_000
_S = pa.string()
GA4_SCHEMA = pa.schema([
    ("event_date", _S), ("event_timestamp", pa.int64()), ("event_name", _S), ("user_pseudo_id", _S),
    ("user_id", _S), ("platform", _S), ("ga_session_id", pa.int64()), ("ga_session_number", pa.int64()),
    ("page_location", _S), ("page_title", _S), ("page_referrer", _S), ("engagement_time_msec", pa.int64()),
    ("device_category", _S), ("device_os", _S), ("geo_country", _S), ("source", _S), ("medium", _S),
    ("campaign", _S), ("gclid", _S), ("fbclid", _S), ("transaction_id", _S), ("value", pa.float64()),
    ("currency", _S), ("items_json", _S), ("_visible_at", pa.timestamp("us", tz="UTC")),
])


def _chunks_by_events(sessions: np.ndarray, n_ev_s: np.ndarray, target: int):
    """Split an ordered array of sessions into consecutive parts of about ``target`` events."""
    if len(sessions) == 0:
        return
    cum = np.cumsum(n_ev_s[sessions])
    cuts = np.searchsorted(cum, np.arange(target, int(cum[-1]), target), side="right")
    for part in np.split(sessions, cuts):
        if len(part):
            yield part


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash_u01(a: np.ndarray, b: np.ndarray, stream: int, seed: int) -> np.ndarray:
    """Counter-based uniforms in (0, 1) from (a, b, stream, seed) - splitmix64. The same event gets
    the same number whichever chunk it is generated in."""
    with np.errstate(over="ignore"):
        z = (a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + b.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
             + np.uint64((stream * 0x2545F4914F6CDD1D + seed * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0


class _Expander:
    """Expands sessions into their template events with per-event randomness that depends only on
    (session, position): timing offsets, products, pages."""

    GAP_MEAN = np.array([0, 0, 35, 40, 25, 30, 45, 0], dtype=float) * US

    def __init__(self, counts: np.ndarray, seed: int):
        self.counts = counts
        self.seed = seed

    def expand(self, sel: np.ndarray) -> dict:
        cnt = self.counts[sel]
        n_ev = cnt.sum(axis=1).astype(np.int64)
        nslot = cnt.shape[1]
        run = np.repeat(np.arange(len(sel) * nslot, dtype=np.int64), cnt.ravel())
        slot = (run % nslot).astype(np.int64)
        local = run // nslot
        sess = sel[local]
        r_in_run = rank_in_group(run)
        starts = np.cumsum(n_ev) - n_ev
        pos = np.arange(len(run), dtype=np.int64) - np.repeat(starts, n_ev)
        is_vi = (slot == 2) & (r_in_run % 2 == 1)
        u_gap = _hash_u01(sess, pos, 1, self.seed)
        gap = (-np.log(u_gap) * self.GAP_MEAN[slot]).astype(np.int64) + np.where(slot >= 2, US, 0)
        gap = np.where(is_vi, 200_000 + (_hash_u01(sess, pos, 2, self.seed) * 1_300_000).astype(np.int64), gap)
        gap = np.where(slot == 7, 62 * US, gap)
        offs = segment_cumsum(gap, n_ev)
        # the view_item shares the product of its page_view
        ppos = pos - is_vi
        prod = (_hash_u01(sess, ppos, 3, self.seed) * len(CATALOG_NAMES)).astype(np.int64)
        other = (_hash_u01(sess, pos, 4, self.seed) * 1e6).astype(np.int64)
        linger = (3 * US + _hash_u01(sess, pos, 5, self.seed) * 37 * US).astype(np.int64)
        return dict(sess=sess, slot=slot, pos=pos, offs=offs, is_vi=is_vi, prod=prod, other=other, linger=linger)


def _event_table(o, ts, es, ecode, eslot, page, ref_pv, engaged, is_pv, is_fv, epos, *, sess_loc, s_ch, s_camp, s_src,
                 s_dev, s_order_c, sid, sess_num, state, delay, g_pos, f_pos, is_gclid, is_fbclid, dev_plat,
                 dev_cat, os_, dev_country, dev_person, login_ts, ords, vocab, start_us) -> pa.Table:
    """One chunk of the GA4 table (rows ``o`` of the chunk's event arrays), dictionary-encoded."""
    ts, es, ecode, eslot, page, ref_pv = ts[o], es[o], ecode[o], eslot[o], page[o], ref_pv[o]
    engaged, is_pv, is_fv = engaged[o], is_pv[o], is_fv[o]
    edev = s_dev[es]
    eperson = dev_person[edev]
    e_plat = dev_plat[edev]
    web = e_plat == 0
    e_camp = np.maximum(s_camp[es], 0)
    n_pages = vocab["n_pages"]
    landing_ev = eslot <= 1
    loc_idx = np.where(landing_ev, sess_loc[es], page)
    ref_idx = np.where(ref_pv >= 0, ref_pv, n_pages + s_src[es])
    # user_id: sessions after the device's first login, from the login event on (never before it)
    post_login = (state[es] == 2) | ((state[es] == 1) & (eslot >= 4) & ~is_fv)
    has_uid = post_login & (ts >= login_ts[edev]) & (eperson >= 0) & ~is_fv
    e_order = np.where(ecode == PUR, s_order_c[es], -1)
    pur = e_order >= 0
    is_item = (ecode == VI) | (ecode == ATC)
    n_cat = len(CATALOG_NAMES)
    item_idx = np.where(pur, n_cat + np.maximum(e_order, 0), page - _pages()[3]["prod0"])
    day_idx = (ts - start_us) // DAY - vocab["d0"]
    return pa.table({
        "event_date": dict_col(vocab["day"], day_idx),
        "event_timestamp": pa.array(ts, pa.int64()),
        "event_name": dict_col(EV_NAMES, ecode),
        "user_pseudo_id": dict_col(vocab["pseudo"], edev),
        "user_id": dict_col(vocab["uid"], np.maximum(eperson, 0), ~has_uid),
        "platform": dict_col(PLATFORMS, e_plat),
        "ga_session_id": pa.array(sid[es], pa.int64()),
        "ga_session_number": pa.array(sess_num[es], pa.int64()),
        "page_location": dict_col(vocab["loc"], loc_idx, ~web),
        "page_title": dict_col(vocab["title"], np.where(web, page, n_pages + page)),
        "page_referrer": dict_col(vocab["ref"], ref_idx, ~web | (ref_pv == -2)),
        "engagement_time_msec": pa.array(np.where(is_pv, engaged, 0), pa.int64(), mask=~is_pv),
        "device_category": dict_col(CATEGORIES, dev_cat[edev]),
        "device_os": dict_col(OSES, os_[edev]),
        "geo_country": dict_col(COUNTRIES, dev_country[edev]),
        "source": dict_col(vocab["src"], s_src[es]),
        "medium": dict_col(vocab["med"], e_camp),
        "campaign": dict_col(vocab["utm"], e_camp),
        "gclid": dict_col(vocab["gclid"], np.maximum(g_pos[es], 0), ~is_gclid[es]),
        "fbclid": dict_col(vocab["fbclid"], np.maximum(f_pos[es], 0), ~is_fbclid[es]),
        "transaction_id": dict_col(ords.order_id, np.maximum(e_order, 0), ~pur),
        "value": pa.array(np.where(pur, ords.amount_minor[np.maximum(e_order, 0)] / 100.0, np.nan), pa.float64(),
                          mask=~pur),
        "currency": dict_col(vocab["cur"], ords.currency[np.maximum(e_order, 0)], ~pur),
        "items_json": dict_col(vocab["items"], np.where(pur | is_item, item_idx, 0), ~(pur | is_item)),
        "_visible_at": ts_array(ts + delay[es]),
    }), e_order[pur], eperson[has_uid]


def _money(minor: np.ndarray) -> pa.Array:
    minor = np.asarray(minor, dtype=np.int64)
    return join(number_strings(minor // 100), ".", strings_from_matrix(digit_matrix(minor % 100, 2)))


def _items_json(rng, ords: Orders) -> pa.Array:
    """items_json vocabulary: one entry per catalog product (view_item / add_to_cart), then one per
    order (index n_catalog + order): 1-4 items whose prices sum to the order value exactly."""
    sku = pa.array(CATALOG_SKU, pa.string())
    name = pa.array(CATALOG_NAMES, pa.string())
    price_minor = np.round(CATALOG_PRICE * 100).astype(np.int64)
    one = join('[{"item_id": "', sku, '", "item_name": "', name, '", "price": ', _money(price_minor),
               ', "quantity": 1}]')
    amt = ords.amount_minor
    n = len(amt)
    k = 1 + rng.binomial(3, 0.22, n)
    k = np.minimum(k, np.maximum(1, amt // 500))
    it_ev = np.repeat(np.arange(n), k)
    w = rng.gamma(2.0, 1.0, len(it_ev))
    wsum = np.bincount(it_ev, weights=w, minlength=n)
    share = np.floor(w / wsum[it_ev] * np.repeat(amt, k)).astype(np.int64)
    ends = np.cumsum(k) - 1
    share[ends] += amt - np.bincount(it_ev, weights=share, minlength=n).astype(np.int64)
    p_it = rng.integers(0, len(CATALOG_NAMES), len(it_ev))
    item_txt = join('{"item_id": "', sku.take(pa.array(p_it)), '", "item_name": "', name.take(pa.array(p_it)),
                    '", "price": ', _money(share), ', "quantity": 1}')
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), item_txt)
    return pa.concat_arrays([one, join("[", pc.binary_join(lists, ", "), "]")])
