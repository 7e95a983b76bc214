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


def make_ga4(ctx: Ctx, camps: Campaigns, ppl: People, ords: Orders, progress=None) -> GA4Result:
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
    # ---------------------------------------------------------------- events per slot
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
                       s_login.astype(np.int64), n_atc, n_bc, n_pur], axis=1)
    # durations: gaps before each event by slot (per event random)
    n_ev_s = counts.sum(axis=1)
    run = np.repeat(np.arange(ns * len(SLOTS)), counts.ravel())
    slot = run % len(SLOTS)
    ev_s = run // len(SLOTS)
    r_in_run = rank_in_group(run)
    code = np.array([SS, PV, PV, PV, LOGIN, ATC, BC, PUR])[slot]
    code = np.where((slot == 2) & (r_in_run % 2 == 1), VI, code)
    ne = len(code)
    gap_mean = np.array([0, 0, 35, 40, 25, 30, 45, 0], dtype=float)[slot] * US
    gap = (rng.exponential(1.0, ne) * gap_mean).astype(np.int64) + np.where(slot >= 2, US, 0)
    gap = np.where((slot == 2) & (r_in_run % 2 == 1), rng.integers(200_000, 1_500_000, ne), gap)   # view_item after its page_view
    gap = np.where(slot == 7, 62 * US, gap)
    offs = segment_cumsum(gap, n_ev_s)
    # purchase sessions: begin_checkout lands 60 s before the order time
    bc_off = np.zeros(ns, dtype=np.int64)
    mbc = (slot == 6) & is_pur[ev_s]
    bc_off[ev_s[mbc]] = offs[mbc]
    s_start = np.where(is_pur, ords.ordered_at[s_order_c] - 60 * US - bc_off, s_start)
    # the acquisition visit that is also the first purchase defines acquired_at
    n_acq = len(acq_p)
    acq_is_pur = is_pur[:n_acq]
    ppl.acquired_at[acq_p[acq_is_pur]] = s_start[:n_acq][acq_is_pur]

    # paid clicks (all sessions through a paid campaign, seen by GA4 or not) and platform conversions
    s_day = (s_start - ctx.start_us) // DAY
    in_range = (s_day >= 0) & (s_day < ctx.n_obs_days) & (s_camp >= 0)
    paid = in_range & np.isin(s_ch, [CH["paid_search"], CH["paid_social"]])
    paid_sessions = np.zeros((ctx.n_obs_days, camps.channel.shape[0]), dtype=np.int64)
    np.add.at(paid_sessions, (s_day[paid], s_camp[paid]), 1)
    conv = paid & is_pur & ~ords.is_failed[s_order_c]
    paid_conv = np.zeros_like(paid_sessions)
    np.add.at(paid_conv, (s_day[conv], s_camp[conv]), 1)

    _mark("keep visible sessions")
    # ---------------------------------------------------------------- keep visible sessions
    keep_s = ~s_drop & (s_start < end) & (s_start >= ctx.start_us - DAY)
    # order sessions by device and time: session number, first visit, login state
    so = np.lexsort((s_start, s_dev))
    so = so[keep_s[so]]
    dev_sorted = s_dev[so]
    sess_num = np.zeros(ns, dtype=np.int64)
    sess_num[so] = rank_in_group(dev_sorted) + 1
    # ga_session_id = session start in seconds; nudge so that it is unique per device
    sid = s_start // US
    login_sorted = s_login[so]
    pos_sorted = np.arange(len(so))
    lp = np.where(login_sorted, pos_sorted, np.iinfo(np.int64).max)
    # first login position per device run
    run_start = np.flatnonzero(np.r_[True, dev_sorted[1:] != dev_sorted[:-1]]) if len(so) else np.array([], int)
    run_id = np.cumsum(np.r_[True, dev_sorted[1:] != dev_sorted[:-1]]) - 1 if len(so) else np.array([], int)
    first_login = np.minimum.reduceat(lp, run_start) if len(so) else np.array([], np.int64)
    fl = first_login[run_id]
    state = np.zeros(ns, dtype=np.int8)      # 0 anonymous, 1 first login in this session, 2 logged in before
    state[so] = np.where(pos_sorted > fl, 2, np.where(pos_sorted == fl, 1, 0))
    # first visit = device's first visible session
    fv = np.zeros(ns, dtype=bool)
    fv[so] = sess_num[so] == 1
    # only emit a login event when the device was not yet logged in
    no_login_ev = (state == 2)
    # remove login events of already-logged-in sessions, and events of invisible sessions
    ev_keep = keep_s[ev_s] & ~((code == LOGIN) & no_login_ev[ev_s])
    # user_id: sessions after the first login; in the first-login session from the login event on
    post_login_slot = slot >= 4
    has_uid = (state[ev_s] == 2) | ((state[ev_s] == 1) & post_login_slot)
    # add first_visit events (copy of session_start)
    fv_ev = np.flatnonzero((code == SS) & fv[ev_s] & ev_keep)
    idx = np.concatenate([np.flatnonzero(ev_keep), fv_ev])
    is_fv = np.concatenate([np.zeros(len(idx) - len(fv_ev), bool), np.ones(len(fv_ev), bool)])
    ev_s2 = ev_s[idx]
    ts = s_start[ev_s2] + offs[idx]
    pos = np.where(is_fv, -1, np.arange(ne)[idx] - (np.cumsum(n_ev_s) - n_ev_s)[ev_s2])
    order = np.lexsort((pos, ev_s2, ts))
    idx, is_fv, ev_s2, ts = idx[order], is_fv[order], ev_s2[order], ts[order]
    ecode = np.where(is_fv, FV, code[idx])
    eslot = slot[idx]
    edev = s_dev[ev_s2]
    eperson = dev_person_all[edev]
    n_events = len(idx)

    _mark("pages")
    # ---------------------------------------------------------------- pages
    paths, titles, screens, P = _pages()
    n_cat = len(CATALOG_NAMES)
    u = rng.random(ns)
    landing = np.where(u < 0.4, P["home"], np.where(u < 0.75, P["prod0"] + rng.integers(0, n_cat, ns),
                                                    P["coll0"] + rng.integers(0, len(COLLECTIONS), ns)))
    prod_ev = rng.integers(0, n_cat, ne)
    # the view_item shares the product of the page_view just before it
    vi_pos = np.flatnonzero((slot == 2) & (r_in_run % 2 == 1))
    prod_ev[vi_pos] = prod_ev[vi_pos - 1]
    other_pages = np.array([P["home"], P["search"], P["cart"], P["coll0"], P["coll0"] + 1, P["coll0"] + 2,
                            P["orders"]])
    other_pg = other_pages[rng.integers(0, len(other_pages), ne)]
    page_all = np.select([slot <= 1, slot == 2, slot == 3, slot == 4, slot == 5, slot == 6, slot == 7],
                         [landing[ev_s], P["prod0"] + prod_ev, other_pg, P["login"],
                          P["prod0"] + prod_ev, P["checkout"], P["thanks"]])
    # add_to_cart happens on the last product page viewed (or the landing page)
    page = page_all[idx]
    is_pv = ecode == PV
    # referrer: previous page_view in the same session; the landing page gets the traffic referrer
    pv_idx = np.flatnonzero(is_pv)
    prev_same = np.r_[False, ev_s2[pv_idx[1:]] == ev_s2[pv_idx[:-1]]]
    prev_page = np.full(len(pv_idx), -1)
    prev_page[1:] = page[pv_idx[:-1]]
    prev_page = np.where(prev_same, prev_page, -1)
    engaged = np.zeros(n_events, dtype=np.int64)
    nxt_same = np.r_[ev_s2[1:] == ev_s2[:-1], False]
    nxt_ts = np.r_[ts[1:], ts[-1:]] if n_events else ts
    engaged = np.where(nxt_same, nxt_ts - ts, rng.integers(3 * US, 40 * US, n_events)) // 1000

    _mark("traffic source per session")
    # ---------------------------------------------------------------- traffic source per session
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

    _mark("columns")
    # ---------------------------------------------------------------- columns
    e_ch = s_ch[ev_s2]
    e_camp = np.maximum(s_camp[ev_s2], 0)
    e_plat = dev_plat[edev]
    web = e_plat == 0
    # pseudo ids: web "<random>.<first seen seconds>", app: 32 hex
    first_seen = np.full(n_dev, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, edev, ts)
    seen = first_seen < np.iinfo(np.int64).max
    first_seen = np.where(seen, first_seen, ctx.start_us)
    rnd = rng.integers(100_000_000, 2_147_483_647, n_dev)
    web_ids = join(number_strings(rnd), ".", number_strings(first_seen // US))
    app_ids = random_strings(rng, n_dev, 32, HEX)
    pseudo = pc.if_else(pa.array(dev_plat == 0), web_ids, app_ids)
    # click ids per session (null outside paid sessions)
    g_pos = np.cumsum(is_gclid) - 1            # position among paid-search sessions
    f_pos = np.cumsum(is_fbclid) - 1
    gclid_s = random_strings(rng, int(is_gclid.sum()), 40, ALNUM, prefix="Cj0KCQiA")
    fbclid_s = random_strings(rng, int(is_fbclid.sum()), 56, ALNUM, prefix="IwAR")
    gcl_e = dict_col(gclid_s, g_pos[ev_s2], ~is_gclid[ev_s2])
    fb_e = dict_col(fbclid_s, f_pos[ev_s2], ~is_fbclid[ev_s2])
    gclid = gclid_s.take(pa.array(np.maximum(g_pos, 0), mask=~is_gclid))
    fbclid = fbclid_s.take(pa.array(np.maximum(f_pos, 0), mask=~is_fbclid))
    # page_location: landing events carry the click id / utm query -> landing URL per session
    landing_ev = eslot <= 1
    c_med = ct.column("utm_medium").combine_chunks()
    c_utm = ct.column("utm_campaign").combine_chunks()
    # utm query per (source, campaign) pair, looked up per session
    has_utm = np.isin(s_ch, [CH["email"], CH["affiliate"], CH["paid_social"]])
    pair = s_src * len(c_med) + np.maximum(s_camp, 0)
    upairs = np.unique(pair[has_utm])
    utm_vocab = join("?utm_source=", pa.array(src_vocab, pa.string()).take(pa.array(upairs // len(c_med))),
                     "&utm_medium=", c_med.take(pa.array(upairs % len(c_med))),
                     "&utm_campaign=", c_utm.take(pa.array(upairs % len(c_med))))
    utm_vocab = pa.concat_arrays([utm_vocab, pa.array([""], pa.string())])
    q = utm_vocab.take(pa.array(np.where(has_utm, np.searchsorted(upairs, pair), len(upairs))))
    q = pc.if_else(pa.array(is_gclid), join("?gclid=", gclid), q)
    q = pc.if_else(pa.array(is_fbclid), join(q, "&fbclid=", fbclid), q)
    url_vocab = join(SITE, pa.array(paths, pa.string()))
    landing_url = join(url_vocab.take(pa.array(landing)), q)
    n_pages = len(paths)
    loc_idx = np.where(landing_ev, n_pages + ev_s2, page)
    page_loc = dict_col(pa.concat_arrays([url_vocab, landing_url]), loc_idx, ~web)
    title = dict_col(titles + screens, np.where(web, page, n_pages + page))
    ref_pv = np.full(n_events, -2)
    ref_pv[pv_idx] = prev_page
    ref_idx = np.where(ref_pv >= 0, ref_pv, n_pages + s_src[ev_s2])
    referrer = dict_col(pa.concat_arrays([url_vocab, src_ref]), ref_idx, ~web | (ref_pv == -2))
    # user id
    # sessions of one device can overlap in time: never before the device's first login event
    login_ts = np.full(n_dev, np.iinfo(np.int64).max, dtype=np.int64)
    first_login_ev = (ecode == LOGIN) & (state[ev_s2] == 1)
    np.minimum.at(login_ts, edev[first_login_ev], ts[first_login_ev])
    has_uid_e = np.where(is_fv, False, has_uid[idx]) & (ts >= login_ts[edev])
    has_uid_e &= eperson >= 0
    uid_vocab = join("u_", number_strings(ppl.web_user_num))
    user_id = dict_col(uid_vocab, np.maximum(eperson, 0), ~has_uid_e)
    # ecommerce
    e_order = np.where(ecode == PUR, s_order_c[ev_s2], -1)
    pur = e_order >= 0
    tx = dict_col(ords.order_id, np.maximum(e_order, 0), ~pur)
    value = np.where(pur, ords.amount_minor[np.maximum(e_order, 0)] / 100.0, np.nan)
    cur_up = pa.array([c.upper() for c in CURRENCIES], pa.string())
    currency = dict_col(cur_up, ords.currency[np.maximum(e_order, 0)], ~pur)
    items = _items_json(rng, ords, prod_ev[idx], ecode, e_order)
    # visibility: 5% of sessions arrive 1-3 days late (apps more often)
    late = rng.random(ns) < np.where(dev_plat[s_dev] == 0, 0.04, 0.10)
    delay = np.where(late, rng.integers(DAY, 3 * DAY, ns), rng.integers(2 * MINUTE, 4 * HOUR, ns))
    vis = ts + delay[ev_s2]
    day_idx = (ts - ctx.start_us) // DAY
    dmin = int(day_idx.min()) if n_events else 0
    import datetime as _dt
    ndays = int(day_idx.max()) - dmin + 1 if n_events else 1
    day_vocab = pa.array([(ctx.start + _dt.timedelta(days=dmin + i)).strftime("%Y%m%d") for i in range(ndays)],
                         pa.string())
    engage = np.where(is_pv, engaged, 0)
    _mark("columns")
    table = pa.table({
        "event_date": dict_col(day_vocab, day_idx - dmin),
        "event_timestamp": pa.array(ts, pa.int64()),
        "event_name": dict_col(EV_NAMES, ecode),
        "user_pseudo_id": dict_col(pseudo, edev),
        "user_id": user_id,
        "platform": dict_col(PLATFORMS, e_plat),
        "ga_session_id": pa.array(sid[ev_s2], pa.int64()),
        "ga_session_number": pa.array(sess_num[ev_s2], pa.int64()),
        "page_location": page_loc,
        "page_title": title,
        "page_referrer": referrer,
        "engagement_time_msec": pa.array(engage, pa.int64(), mask=~is_pv),
        "device_category": dict_col(CATEGORIES, dev_cat[edev]),
        "device_os": dict_col(OSES, os_[edev]),
        "geo_country": dict_col(COUNTRIES, dev_country[edev]),
        "source": dict_col(src_vocab, s_src[ev_s2]),
        "medium": dict_col(c_med, e_camp),
        "campaign": dict_col(c_utm, e_camp),
        "gclid": gcl_e,
        "fbclid": fb_e,
        "transaction_id": tx,
        "value": pa.array(value, pa.float64(), mask=~pur),
        "currency": currency,
        "items_json": items,
        "_visible_at": ts_array(vis),
    })
    device_seen = seen
    _mark("table")
    return GA4Result(events=table, device_person=dev_person_all, device_pseudo=pseudo, device_seen=device_seen,
                     paid_sessions=paid_sessions, paid_conversions=paid_conv, n_sessions=int(keep_s.sum()))


def _money(minor: np.ndarray) -> pa.Array:
    minor = np.asarray(minor, dtype=np.int64)
    return join(number_strings(minor // 100), ".", strings_from_matrix(digit_matrix(minor % 100, 2)))


def _items_json(rng, ords: Orders, prod: np.ndarray, ecode: np.ndarray, e_order: np.ndarray) -> pa.Array:
    """items_json: one catalog item on view_item/add_to_cart; on purchase, 1-4 items whose prices
    sum to the order value exactly."""
    n = len(ecode)
    sku = pa.array(CATALOG_SKU, pa.string())
    name = pa.array(CATALOG_NAMES, pa.string())
    price_minor = np.round(CATALOG_PRICE * 100).astype(np.int64)
    one = join('[{"item_id": "', sku, '", "item_name": "', name, '", "price": ', _money(price_minor),
               ', "quantity": 1}]')
    is_item = (ecode == VI) | (ecode == ATC)
    pur = np.flatnonzero(ecode == PUR)
    o = e_order[pur]
    amt = ords.amount_minor[o]
    k = 1 + rng.binomial(3, 0.22, len(pur))
    k = np.minimum(k, np.maximum(1, amt // 500))
    it_ev = np.repeat(np.arange(len(pur)), k)
    w = rng.gamma(2.0, 1.0, len(it_ev))
    wsum = np.bincount(it_ev, weights=w, minlength=len(pur))
    share = np.floor(w / wsum[it_ev] * np.repeat(amt, k)).astype(np.int64)
    ends = np.cumsum(k) - 1
    share[ends] += amt - np.bincount(it_ev, weights=share, minlength=len(pur)).astype(np.int64)
    p_it = rng.integers(0, len(CATALOG_NAMES), len(it_ev))
    item_txt = join('{"item_id": "', sku.take(pa.array(p_it)), '", "item_name": "', name.take(pa.array(p_it)),
                    '", "price": ', _money(share), ', "quantity": 1}')
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), item_txt)
    pur_json = join("[", pc.binary_join(lists, ", "), "]")
    # one take: catalog entries for item events, the order's list for purchases, null otherwise
    sel = np.where(is_item, prod, 0)
    sel[pur] = len(CATALOG_NAMES) + np.arange(len(pur))
    return dict_col(pa.concat_arrays([one, pur_json]), sel, ~(is_item | (ecode == PUR)))
