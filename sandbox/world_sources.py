"""Stripe, Salesforce and ad-platform tables of the sandbox world, plus the ground truth.

All derived from the hidden truth in :mod:`sandbox.world_people` (vectorised; the only Python
loops are over small vocabularies or the handful of typo'd names).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.world_ga4 import GA4Result
from sandbox.world_people import (CH, CHANNELS, COUNTRIES, COUNTRY_NAME, CURRENCIES, CUR_FX, EMAIL_DOMAINS,
                                  FIRST_NAMES, LAST_NAMES, PHONE_PLAN, WORK_DOMAINS, Campaigns, Ctx, GG,
                                  Orders, People, e164)
from sandbox.world_util import (ALNUM, DAY, HOUR, MINUTE, US, date_array, join, null_where, number_strings,
                                random_strings, rank_in_group, sf_ids, take, ts_array, digit_matrix,
                                strings_from_matrix)

NEVER = np.iinfo(np.int64).max
LEAD_SOURCE = {"organic_search": "Web", "paid_search": "Paid Search", "paid_social": "Social Media",
               "email": "Email", "direct": "Web", "referral": "Partner Referral", "affiliate": "Affiliate"}
FAILURE_CODES = ["card_declined", "expired_card", "incorrect_cvc", "processing_error", "insufficient_funds"]
REFUND_REASONS = ["requested_by_customer", "duplicate", "fraudulent"]


# ==========================================================================================
# string mess
def typo(rng: np.random.Generator, names: pa.Array, mask: np.ndarray) -> pa.Array:
    """One swapped or dropped letter in the masked names (a loop over the few typo'd rows only)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return names
    vals = names.take(pa.array(idx)).to_pylist()
    r = rng.random(len(idx))
    pos = rng.random(len(idx))
    out = []
    for v, rr, pp in zip(vals, r, pos):
        if v is None or len(v) < 3:
            out.append(v)
            continue
        i = 1 + int(pp * (len(v) - 2))
        if rr < 0.5:   # swap i, i+1 (keeps first letter)
            i = min(i, len(v) - 2)
            out.append(v[:i] + v[i + 1] + v[i] + v[i + 2:])
        else:          # drop
            out.append(v[:i] + v[i + 1:])
    repl = np.full(len(names), -1, dtype=np.int64)
    repl[idx] = np.arange(len(idx))
    combined = pa.concat_arrays([names, pa.array(out, pa.string())])
    return combined.take(pa.array(np.where(repl >= 0, len(names) + repl, np.arange(len(names)))))


def email_variant(rng, first: pa.Array, last: pa.Array, email: pa.Array, mask_case: np.ndarray,
                  mask_space: np.ndarray) -> pa.Array:
    """Case variants (``Jane.Doe@Gmail.com``) and surrounding whitespace of canonical e-mails."""
    cap = pc.utf8_title(email)
    upper = pc.utf8_upper(email)
    pick = rng.random(len(email))
    v = pc.if_else(pa.array(mask_case & (pick < 0.8)), cap, email)
    v = pc.if_else(pa.array(mask_case & (pick >= 0.8)), upper, v)
    v = pc.if_else(pa.array(mask_space), join(" ", v, " "), v)
    return v


def phone_formats(country: np.ndarray, national: np.ndarray, fmt: np.ndarray) -> pa.Array:
    """Phone text in one of several real-life formats.
    NANP: 0 "+1 415 555 0100", 1 "(415) 555-0100", 2 "4155550100", 3 "+14155550100", 4 "415-555-0100".
    Others: 0 "+44 7700 900123", 1 "07700 900123", 2 "07700900123", 3 "+447700900123", 4 "+44 (0)7700900123".
    """
    n = len(national)
    e = e164(country, national)
    nat = pa.array(national.astype(np.int64)).cast(pa.string())
    is_nanp = np.isin(country, [COUNTRIES.index("US"), COUNTRIES.index("CA")])
    a3 = pc.utf8_slice_codeunits(nat, 0, 3)
    m3 = pc.utf8_slice_codeunits(nat, 3, 6)
    l4 = pc.utf8_slice_codeunits(nat, 6, 10)
    nanp = [join("+1 ", a3, " ", m3, " ", l4), join("(", a3, ") ", m3, "-", l4), nat, e, join(a3, "-", m3, "-", l4)]
    cc = take([PHONE_PLAN[c][0] for c in COUNTRIES], country)
    trunk = take([PHONE_PLAN[c][2] for c in COUNTRIES], country)
    h4 = pc.utf8_slice_codeunits(nat, 0, 4)
    rest = pc.utf8_slice_codeunits(nat, 4, 20)
    intl = [join(cc, " ", h4, " ", rest), join(trunk, h4, " ", rest), join(trunk, nat), e, join(cc, " (", trunk, ")", nat)]
    out = nanp[0]
    for k in range(5):
        out = pc.if_else(pa.array((fmt == k) & is_nanp), nanp[k], out)
        out = pc.if_else(pa.array((fmt == k) & ~is_nanp), intl[k], out)
    return out


# ==========================================================================================
# versioned Salesforce tables
def versioned(ids: pa.Array, created: np.ndarray, base: dict, changes: list, end_us: int) -> pa.Table:
    """Build version rows: the created version plus one per change (time < end).
    ``changes``: list of (t_change int64 per record (NEVER = none), {field: new value per record}),
    in chronological order per record. A version at time T shows every change with t <= T."""
    n = len(created)
    rec = [np.arange(n)]
    tv = [created]
    for t, _ in changes:
        m = np.flatnonzero(t < end_us)
        rec.append(m)
        tv.append(t[m])
    rec = np.concatenate(rec)
    tv = np.concatenate(tv)
    order = np.lexsort((tv, rec))     # by record then time; final sort by modstamp below
    rec, tv = rec[order], tv[order]
    # Salesforce stamps have whole seconds here; versions of one record are >= 1 s apart
    stamp_us = (tv // US) * US
    same = np.r_[False, rec[1:] == rec[:-1]]
    for _ in range(6):
        prev = np.r_[0, stamp_us[:-1]]
        bump = same & (stamp_us <= prev)
        if not bump.any():
            break
        stamp_us = np.where(bump, prev + US, stamp_us)
    o2 = np.lexsort((rec, stamp_us))
    rec, tv, stamp_us = rec[o2], tv[o2], stamp_us[o2]
    created = (created // US) * US
    ra = pa.array(rec)
    cols = {"Id": ids.take(ra)}
    for name, arr in base.items():
        if isinstance(arr, np.ndarray):
            arr = pa.array(arr)
        cols[name] = arr.take(ra)
    for t, fields in changes:
        applied = pa.array(t[rec] <= tv)
        for name, new in fields.items():
            if isinstance(new, np.ndarray):
                new = pa.array(new)
            newv = new.take(ra)
            cur = cols[name]
            if newv.type != cur.type:
                newv = newv.cast(cur.type)
            cols[name] = pc.if_else(applied, newv, cur)
    stamp = ts_array(stamp_us)
    out = {"Id": cols.pop("Id")}
    out["CreatedDate"] = ts_array(created[rec])
    out["LastModifiedDate"] = stamp
    out["SystemModstamp"] = stamp
    out.update(cols)
    if "IsDeleted" not in out:
        out["IsDeleted"] = pa.array(np.zeros(len(rec), dtype=bool))
    out["_visible_at"] = stamp
    return pa.table(out)


def _until(rng, lo: np.ndarray, hi: int, mean_us: float) -> np.ndarray:
    return lo + rng.exponential(mean_us, len(lo)).astype(np.int64)


def _cap(t: np.ndarray, end_us: int) -> np.ndarray:
    return np.where(t < end_us, t, NEVER)


# ==========================================================================================
def make_sources(ctx: Ctx, camps: Campaigns, ppl: People, ords: Orders, ga4: GA4Result) -> dict:
    rng = ctx.rng("stripe")
    end = ctx.end_excl_us
    N = ppl.n
    tables: dict[str, pa.Table] = {}

    # ------------------------------------------------------------------------ Stripe
    oi = np.flatnonzero(ords.in_obs)
    op = ords.person[oi]
    n_obs = np.bincount(op, minlength=N)
    buyer = n_obs > 0
    seq = ords.seq[oi]
    two = buyer & (n_obs >= 2) & (rng.random(N) < 0.12)
    switch = 1 + (rng.random(N) * np.maximum(n_obs - 1, 1)).astype(np.int64)
    use2 = two[op] & (seq >= switch[op]) & ((seq == switch[op]) | (rng.random(len(oi)) < 0.5))
    # customer index: person p -> 2p (primary) or 2p+1 (guest)
    ckey = op * 2 + use2
    success_t = ords.ordered_at[oi]
    failed_t = np.where(ords.is_failed[oi], success_t, success_t - ords.retry_gap_us[oi])
    first_attempt = np.where(ords.failed_first[oi], failed_t, success_t)
    cust_created = np.full(2 * N, NEVER, dtype=np.int64)
    np.minimum.at(cust_created, ckey, first_attempt)
    cust_used = cust_created < NEVER
    cidx = np.flatnonzero(cust_used)
    cust_created[cidx] -= rng.integers(2 * US, 40 * US, len(cidx))
    corder = np.argsort(cust_created[cidx], kind="stable")
    cidx = cidx[corder]
    nc = len(cidx)
    cperson = cidx // 2
    cguest = (cidx % 2) == 1
    cus_ids = random_strings(rng, nc, 14, ALNUM, prefix="cus_")
    cus_of_key = np.full(2 * N, -1, dtype=np.int64)
    cus_of_key[cidx] = np.arange(nc)
    # emails: primary mostly canonical; guest checkout: plus-address, work address or case variant
    canon = ppl.email.take(pa.array(cperson))
    local = ppl.email_local.take(pa.array(cperson))
    dom = take(EMAIL_DOMAINS, ppl.email_domain[cperson])
    g = rng.random(nc)
    work = join(pc.utf8_lower(ppl.first.take(pa.array(cperson))), ".", pc.utf8_lower(ppl.last.take(pa.array(cperson))),
                "@", take(WORK_DOMAINS, rng.integers(0, len(WORK_DOMAINS), nc)))
    plus = join(local, "+shop@", dom)
    guest_email = pc.if_else(pa.array(g < 0.4), plus, pc.if_else(pa.array(g < 0.7), work, pc.utf8_title(canon)))
    prim_email = pc.if_else(pa.array(rng.random(nc) < 0.06), pc.utf8_title(canon), canon)
    c_email = pc.if_else(pa.array(cguest), guest_email, prim_email)
    name = join(ppl.first.take(pa.array(cperson)), " ", ppl.last.take(pa.array(cperson)))
    name = typo(rng, name, cguest & (rng.random(nc) < 0.25))
    ph_nat = np.where((ppl.phone_changed_at[cperson] >= 0) & (ppl.phone_changed_at[cperson] <= cust_created[cidx]),
                      ppl.new_phone_national[cperson], ppl.phone_national[cperson])
    c_phone = null_where(rng.random(nc) >= 0.55, e164(ppl.country[cperson], ph_nat))
    tables["stripe_customers"] = pa.table({
        "id": cus_ids, "email": c_email, "name": name, "phone": c_phone,
        "created": pa.array(cust_created[cidx] // US, pa.int64()),
        "address_country": take(COUNTRIES, ppl.country[cperson]),
        "_visible_at": ts_array((cust_created[cidx] // US) * US),
    })
    # charges: a failed attempt (3% of orders) then the successful one unless abandoned
    order_cus = cus_of_key[ckey]
    f = np.flatnonzero(ords.failed_first[oi])
    s = np.flatnonzero(~ords.is_failed[oi])
    ch_o = np.concatenate([f, s])
    ch_t = np.concatenate([failed_t[f], success_t[s]])
    ch_ok = np.concatenate([np.zeros(len(f), bool), np.ones(len(s), bool)])
    o = np.lexsort((~ch_ok, ch_t))
    ch_o, ch_t, ch_ok = ch_o[o], ch_t[o], ch_ok[o]
    nch = len(ch_o)
    ch_ids = random_strings(rng, nch, 24, ALNUM, prefix="ch_")
    glob = oi[ch_o]
    fcode = rng.choice(len(FAILURE_CODES), nch, p=[.55, .15, .1, .05, .15])
    cur_lower = pa.array(CURRENCIES, pa.string())
    oid = ords.order_id.take(pa.array(glob))
    cust_rows = order_cus[ch_o]
    tables["stripe_charges"] = pa.table({
        "id": ch_ids,
        "customer": cus_ids.take(pa.array(cust_rows)),
        "amount": pa.array(ords.amount_minor[glob], pa.int64()),
        "currency": cur_lower.take(pa.array(ords.currency[glob])),
        "status": pa.array(np.where(ch_ok, "succeeded", "failed")).cast(pa.string()),
        "paid": pa.array(ch_ok),
        "failure_code": null_where(ch_ok, take(FAILURE_CODES, fcode)),
        "created": pa.array(ch_t // US, pa.int64()),
        "description": join("Order ", oid),
        "metadata_order_id": oid,
        "receipt_email": c_email.take(pa.array(cust_rows)),
        "_visible_at": ts_array((ch_t // US) * US),
    })
    succ_charge_of_order = np.full(ords.n, -1, dtype=np.int64)
    succ_charge_of_order[glob[ch_ok]] = np.flatnonzero(ch_ok)
    # refunds
    r = oi[ords.refunded_minor[oi] > 0]
    rt = ords.refunded_at[r]
    o = np.argsort(rt, kind="stable")
    r, rt = r[o], rt[o]
    tables["stripe_refunds"] = pa.table({
        "id": random_strings(rng, len(r), 24, ALNUM, prefix="re_"),
        "charge": ch_ids.take(pa.array(succ_charge_of_order[r])),
        "amount": pa.array(ords.refunded_minor[r], pa.int64()),
        "currency": cur_lower.take(pa.array(ords.currency[r])),
        "created": pa.array(rt // US, pa.int64()),
        "reason": take(REFUND_REASONS, ords.refund_reason[r]),
        "status": pa.array(["succeeded"] * len(r), pa.string()),
        "_visible_at": ts_array((rt // US) * US),
    })
    stripe_info = dict(cus_ids=cus_ids, cperson=cperson, c_email=c_email, order_cus=order_cus, oi=oi,
                       charge_ids=ch_ids, succ_charge_of_order=succ_charge_of_order,
                       primary_cus=cus_of_key[2 * np.arange(N)], guest_cus=cus_of_key[2 * np.arange(N) + 1])

    sf = _salesforce(ctx, ppl, ords, stripe_info)
    tables.update(sf.pop("tables"))
    tables.update(_ads(ctx, camps, ga4))
    truth = _truth(ctx, camps, ppl, ords, ga4, stripe_info, sf, tables)
    return tables, truth


# ==========================================================================================
def _salesforce(ctx: Ctx, ppl: People, ords: Orders, st: dict) -> dict:
    rng = ctx.rng("salesforce")
    end = ctx.end_excl_us
    N = ppl.n
    oi = st["oi"]
    first_order = np.full(N, NEVER, dtype=np.int64)
    np.minimum.at(first_order, ords.person[oi], ords.ordered_at[oi])
    buyer = first_order < NEVER
    # ---------------- contacts (primary + duplicates)
    c_created = first_order + HOUR + rng.exponential(1.5 * DAY, N).astype(np.int64)
    has_c = buyer & (rng.random(N) < 0.88) & (c_created < end)
    dup = has_c & (rng.random(N) < 0.05)
    p1 = np.flatnonzero(has_c)
    p2 = np.flatnonzero(dup)
    d_created = c_created[p2] + (rng.random(len(p2)) * (end - c_created[p2])).astype(np.int64)
    cp = np.concatenate([p1, p2])
    ccr = np.concatenate([c_created[p1], d_created])
    is_dup = np.concatenate([np.zeros(len(p1), bool), np.ones(len(p2), bool)])
    o = np.argsort(ccr, kind="stable")
    cp, ccr, is_dup = cp[o], ccr[o], is_dup[o]
    nc = len(cp)
    seq0 = int(rng.integers(10_000, 50_000))
    contact_ids = sf_ids("003", seq0 + np.arange(nc))
    prim_contact = np.full(N, -1, dtype=np.int64)
    prim_contact[cp[~is_dup]] = np.flatnonzero(~is_dup)
    pa_cp = pa.array(cp)
    first = typo(rng, ppl.first.take(pa_cp), rng.random(nc) < np.where(is_dup, 0.3, 0.03))
    last = typo(rng, ppl.last.take(pa_cp), rng.random(nc) < np.where(is_dup, 0.2, 0.03))
    canon = ppl.email.take(pa_cp)
    alt = join(pc.utf8_lower(ppl.first.take(pa_cp)), ".", pc.utf8_lower(ppl.last.take(pa_cp)), "@",
               take(WORK_DOMAINS, rng.integers(0, len(WORK_DOMAINS), nc)))
    ecase = rng.random(nc) < np.where(is_dup, 0.5, 0.15)
    espace = rng.random(nc) < np.where(is_dup, 0.2, 0.05)
    email = email_variant(rng, ppl.first.take(pa_cp), ppl.last.take(pa_cp), canon, ecase, espace)
    email = pc.if_else(pa.array(is_dup & (rng.random(nc) < 0.4)), alt, email)
    email = null_where(~is_dup & (rng.random(nc) < 0.02), email)
    country = ppl.country[cp]
    chg = ppl.phone_changed_at[cp]
    old_nat = np.where((chg >= 0) & (chg <= ccr), ppl.new_phone_national[cp], ppl.phone_national[cp])
    fmt = rng.integers(0, 5, nc)
    phone = null_where(rng.random(nc) < 0.15, phone_formats(country, old_nat, fmt))
    mobile = null_where(rng.random(nc) < 0.7, e164(country, old_nat))
    mailing = pc.if_else(pa.array(rng.random(nc) < 0.6), take(COUNTRIES, country), take(COUNTRY_NAME, country))
    opted = ppl.opted_out[cp]
    opt_at_create = opted & (rng.random(nc) < 0.4)
    lead_src = take([LEAD_SOURCE[c] for c in CHANNELS], ppl.acq_channel[cp])
    prim_cus = st["primary_cus"][cp]
    guest_cus = st["guest_cus"][cp]
    scus_idx = np.where(is_dup & (guest_cus >= 0) & (rng.random(nc) < 0.6), guest_cus, prim_cus)
    has_scus = (scus_idx >= 0) & (rng.random(nc) < 0.6)
    scus = null_where(~has_scus, st["cus_ids"].take(pa.array(np.maximum(scus_idx, 0))))
    web_uid = null_where(rng.random(nc) >= 0.70, join("u_", number_strings(ppl.web_user_num[cp])))
    # accounts: household per primary contact; B2B accounts for a few buyers; duplicates 50/50
    n_b2b = max(6, N // 400)
    b2b_created = ctx.start_us + (rng.random(n_b2b) * (end - ctx.start_us) * 0.5).astype(np.int64)
    prim_rows = np.flatnonzero(~is_dup)
    b2b_members = rng.choice(prim_rows, size=min(len(prim_rows), 2 * n_b2b), replace=False) if len(prim_rows) else prim_rows
    acc_of_contact = np.full(nc, -1, dtype=np.int64)
    # household accounts: primary contacts not in B2B + duplicates with their own account
    own = ~is_dup | (rng.random(nc) < 0.5)
    own[b2b_members] = False
    hh = np.flatnonzero(own)
    n_acc = n_b2b + len(hh)
    acc_created = np.concatenate([b2b_created, ccr[hh] - US])
    acc_kind_b2b = np.concatenate([np.ones(n_b2b, bool), np.zeros(len(hh), bool)])
    acc_person = np.concatenate([np.full(n_b2b, -1), cp[hh]])
    ao = np.argsort(acc_created, kind="stable")
    rank = np.empty(n_acc, dtype=np.int64)
    rank[ao] = np.arange(n_acc)
    acc_ids = sf_ids("001", int(rng.integers(10_000, 50_000)) + rank)
    acc_of_contact[hh] = n_b2b + np.arange(len(hh))
    acc_of_contact[b2b_members] = np.arange(len(b2b_members)) % n_b2b
    # duplicates sharing the account of the primary contact
    share = np.flatnonzero(acc_of_contact < 0)
    acc_of_contact[share] = acc_of_contact[prim_contact[cp[share]]]
    # changes: phone change, opt-out, deletion (merged duplicates, a few others)
    t_phone = _cap(np.where((chg > ccr), chg, NEVER), end)
    new_phone = phone_formats(country, ppl.new_phone_national[cp], fmt)
    t_opt = np.where(opted & ~opt_at_create, ccr + (rng.random(nc) * np.maximum(end - ccr, 0)).astype(np.int64), NEVER)
    t_opt = _cap(t_opt, end)
    deleted = (is_dup & (rng.random(nc) < 0.2)) | (~is_dup & (rng.random(nc) < 0.003))
    t_del = np.where(deleted, ccr + (rng.random(nc) * np.maximum(end - ccr, 0)).astype(np.int64) + MINUTE, NEVER)
    t_del = _cap(t_del, end)
    t_phone = np.where(t_phone < t_del, t_phone, NEVER)
    t_opt = np.where(t_opt < t_del, t_opt, NEVER)
    contact = versioned(contact_ids, ccr, {
        "AccountId": acc_ids.take(pa.array(acc_of_contact)),
        "FirstName": first, "LastName": last, "Email": email, "Phone": phone, "MobilePhone": mobile,
        "MailingCountry": mailing, "HasOptedOutOfEmail": pa.array(opt_at_create), "LeadSource": lead_src,
        "Stripe_Customer_Id__c": scus, "Web_User_Id__c": web_uid,
        "IsDeleted": pa.array(np.zeros(nc, bool)),
    }, [(t_phone, {"Phone": new_phone}), (t_opt, {"HasOptedOutOfEmail": np.ones(nc, bool)}),
        (t_del, {"IsDeleted": np.ones(nc, bool)})], end)

    # ---------------- accounts
    b2b_names = [f"{a} {b}" for a, b in zip(
        np.array(["Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Adatum", "Proseware",
                  "Lucerne", "Margie", "Alpine", "Blue Yonder", "Coho", "Fourth Coffee", "Woodgrove"])[
            np.arange(n_b2b) % 15],
        np.array(["Traders", "Ltd", "Inc", "GmbH", "Group", "Partners", "LLC"])[(np.arange(n_b2b) // 15 + np.arange(n_b2b)) % 7])]
    b2b_names = [f"{nm} {i // 105 + 1}" if i >= 105 else nm for i, nm in enumerate(b2b_names)]
    hh_last = last.take(pa.array(hh))
    acc_name = pa.concat_arrays([pa.array(b2b_names, pa.string()), join(hh_last, " Household")])
    industries = ["Retail", "Hospitality", "Technology", "Education", "Healthcare", "Media"]
    b2b_country = rng.choice(len(COUNTRIES), n_b2b, p=[.5, .15, .09, .07, .05, .04, .04, .06])
    acc_country = np.concatenate([b2b_country, country[hh]])
    acc_phone = pa.concat_arrays([phone_formats(b2b_country, 2_000_000_000 + rng.integers(0, 999_999_999, n_b2b) % 10**9 + 10**9,
                                                rng.integers(0, 5, n_b2b)),
                                  phone.take(pa.array(hh))])
    website = pa.concat_arrays([join("https://www.", pc.utf8_lower(pc.replace_substring(pa.array(b2b_names, pa.string()), " ", "")), ".example"),
                                pa.nulls(len(hh), pa.string())])
    acc_type = pa.concat_arrays([pa.array(np.where(rng.random(n_b2b) < 0.7, "Customer - Direct", "Prospect")).cast(pa.string()),
                                 pa.array(["Household"] * len(hh), pa.string())])
    account = versioned(acc_ids, acc_created, {
        "Name": acc_name,
        "Industry": pa.concat_arrays([take(industries, rng.integers(0, len(industries), n_b2b)), pa.nulls(len(hh), pa.string())]),
        "BillingCountry": take(COUNTRIES, acc_country), "Phone": acc_phone, "Website": website, "Type": acc_type,
    }, [], end)

    # ---------------- leads
    lead_p = np.flatnonzero((ppl.acq_channel == CH["email"]) | (rng.random(N) < 0.2))
    lt = np.where(ppl.acq_channel[lead_p] == CH["email"],
                  ppl.acquired_at[lead_p] - rng.exponential(20 * DAY, len(lead_p)).astype(np.int64),
                  ppl.acquired_at[lead_p] + rng.integers(MINUTE, HOUR, len(lead_p)))
    lt = np.maximum(lt, ctx.start_us + MINUTE)
    ok = lt < end
    lead_p, lt = lead_p[ok], lt[ok]
    n_anon_lead = int(N * 0.3)
    w = ctx.day_weights()
    al_t = ctx.start_us + rng.choice(len(w), n_anon_lead, p=w / w.sum()) * DAY + rng.integers(0, DAY, n_anon_lead)
    l_person = np.concatenate([lead_p, np.full(n_anon_lead, -1)])
    l_t = np.concatenate([lt, al_t])
    o = np.argsort(l_t, kind="stable")
    l_person, l_t = l_person[o], l_t[o]
    nl = len(l_t)
    lead_ids = sf_ids("00Q", int(rng.integers(10_000, 50_000)) + np.arange(nl))
    isp = l_person >= 0
    lpp = pa.array(np.maximum(l_person, 0))
    fi = rng.integers(0, len(FIRST_NAMES), nl)
    li = rng.integers(0, len(LAST_NAMES), nl)
    l_first = pc.if_else(pa.array(isp), ppl.first.take(lpp), take(FIRST_NAMES, fi))
    l_last = pc.if_else(pa.array(isp), ppl.last.take(lpp), take(LAST_NAMES, li))
    rnd_num = rng.integers(1, 9999, nl)
    anon_email = join(pc.utf8_lower(l_first), ".", pc.utf8_lower(l_last), number_strings(rnd_num), "@",
                      take(EMAIL_DOMAINS, rng.integers(0, len(EMAIL_DOMAINS), nl)))
    l_email = pc.if_else(pa.array(isp), email_variant(rng, l_first, l_last, ppl.email.take(lpp),
                                                      rng.random(nl) < 0.2, rng.random(nl) < 0.05), anon_email)
    l_country = np.where(isp, ppl.country[np.maximum(l_person, 0)], rng.integers(0, len(COUNTRIES), nl))
    l_nat = np.where(isp, ppl.phone_national[np.maximum(l_person, 0)],
                     2_000_000_000 + rng.integers(0, 999_999_999, nl))
    l_nat = np.where((~isp) & (l_country != 0) & (l_country != 7), l_nat % 10**9 // 10 + 7 * 10**8, l_nat)
    l_phone = null_where(rng.random(nl) < 0.5, phone_formats(l_country, l_nat, rng.integers(0, 5, nl)))
    b2b_lead = ~isp & (rng.random(nl) < 0.15)
    company = pc.if_else(pa.array(b2b_lead), take(["Acme Events", "Globex Gifts", "Initech HR", "Hooli Perks",
                                                  "Umbrella Staff Store"], rng.integers(0, 5, nl)),
                         pa.scalar("[not provided]"))
    l_src = pc.if_else(pa.array(isp), take([LEAD_SOURCE[c] for c in CHANNELS], ppl.acq_channel[np.maximum(l_person, 0)]),
                       take(["Web", "Email", "Social Media", "Trade Show", "Partner Referral"],
                            rng.choice(5, nl, p=[.45, .25, .15, .05, .1])))
    l_opt = np.where(isp, ppl.opted_out[np.maximum(l_person, 0)], rng.random(nl) < 0.1)
    # conversion when the person's (primary) contact is created
    pcon = np.where(isp, prim_contact[np.maximum(l_person, 0)], -1)
    t_conv = np.where(pcon >= 0, np.maximum(ccr[np.maximum(pcon, 0)], l_t + MINUTE), NEVER)
    t_conv = _cap(t_conv, end)
    t_work = _cap(np.where(rng.random(nl) < 0.4, l_t + rng.exponential(3 * DAY, nl).astype(np.int64), NEVER), end)
    t_work = np.where(t_work < t_conv, t_work, NEVER)
    t_closed = _cap(np.where((~isp) & (rng.random(nl) < 0.35), np.maximum(t_work, l_t) + rng.exponential(20 * DAY, nl).astype(np.int64), NEVER), end)
    t_closed = np.where(t_work < NEVER, t_closed, NEVER)
    lead = versioned(lead_ids, l_t, {
        "FirstName": l_first, "LastName": l_last, "Email": l_email, "Phone": l_phone, "Company": company,
        "Status": pa.array(["Open - Not Contacted"] * nl, pa.string()), "LeadSource": l_src,
        "IsConverted": pa.array(np.zeros(nl, bool)), "ConvertedContactId": pa.nulls(nl, pa.string()),
        "HasOptedOutOfEmail": pa.array(l_opt),
    }, [(t_work, {"Status": pa.array(["Working - Contacted"] * nl, pa.string())}),
        (t_closed, {"Status": pa.array(["Closed - Not Converted"] * nl, pa.string())}),
        (t_conv, {"Status": pa.array(["Closed - Converted"] * nl, pa.string()),
                  "IsConverted": np.ones(nl, bool),
                  "ConvertedContactId": contact_ids.take(pa.array(np.maximum(pcon, 0)))})], end)

    # ---------------- opportunities (B2B accounts)
    n_opp_per = rng.poisson(4, n_b2b) + 1
    oa = np.repeat(np.arange(n_b2b), n_opp_per)
    no = len(oa)
    o_t = b2b_created[oa] + (rng.random(no) * (end - b2b_created[oa])).astype(np.int64)
    o = np.argsort(o_t, kind="stable")
    oa, o_t = oa[o], o_t[o]
    opp_ids = sf_ids("006", int(rng.integers(10_000, 50_000)) + np.arange(no))
    amount = np.round(rng.lognormal(np.log(4000), 0.8, no), -1)
    stalled = rng.random(no) < 0.2
    t_q = _cap(np.where(stalled, NEVER, o_t + rng.exponential(7 * DAY, no).astype(np.int64)), end)
    t_p = _cap(np.where(t_q < NEVER, t_q + rng.exponential(10 * DAY, no).astype(np.int64), NEVER), end)
    t_c = _cap(np.where(t_p < NEVER, t_p + rng.exponential(14 * DAY, no).astype(np.int64), NEVER), end)
    won = rng.random(no) < 0.55
    close_planned = date_array(o_t + 45 * DAY)
    lines = ["Corporate Gifts", "Uniforms", "Event Merchandise", "Wholesale Order"]
    opp_name = join(pa.array(b2b_names, pa.string()).take(pa.array(oa)), " - ",
                    take(lines, rng.integers(0, len(lines), no)))
    nulls_b = np.zeros(no, bool)
    opp = versioned(opp_ids, o_t, {
        "AccountId": acc_ids.take(pa.array(oa)), "Name": opp_name,
        "StageName": pa.array(["Prospecting"] * no, pa.string()), "Amount": pa.array(amount, pa.float64()),
        "CloseDate": close_planned, "IsWon": pa.array(nulls_b), "IsClosed": pa.array(nulls_b),
        "LeadSource": take(["Web", "Trade Show", "Partner Referral", "Email"], rng.integers(0, 4, no)),
    }, [(t_q, {"StageName": pa.array(["Qualification"] * no, pa.string())}),
        (t_p, {"StageName": pa.array(["Proposal/Price Quote"] * no, pa.string())}),
        (t_c, {"StageName": pa.array(np.where(won, "Closed Won", "Closed Lost")).cast(pa.string()),
               "IsWon": won, "IsClosed": np.ones(no, bool),
               "CloseDate": date_array(np.where(t_c < NEVER, t_c, o_t))})], end)

    # ---------------- cases (support) about an observed order
    ocon = prim_contact[ords.person[oi]]
    has = (ocon >= 0) & (rng.random(len(oi)) < 0.08)
    co = oi[has]
    cc = ocon[has]
    cs_t = ords.ordered_at[co] + HOUR + rng.exponential(3 * DAY, len(co)).astype(np.int64)
    cs_t = np.maximum(cs_t, ccr[cc] + MINUTE)
    ok = cs_t < end
    co, cc, cs_t = co[ok], cc[ok], cs_t[ok]
    o = np.argsort(cs_t, kind="stable")
    co, cc, cs_t = co[o], cc[o], cs_t[o]
    ncs = len(co)
    case_ids = sf_ids("500", int(rng.integers(10_000, 50_000)) + np.arange(ncs))
    ctype = rng.choice(5, ncs, p=[.35, .25, .15, .15, .1])
    ctype = np.where(ords.failed_first[co] & (rng.random(ncs) < 0.6), 3, ctype)
    types = ["Shipping", "Return", "Product", "Payment", "Account"]
    subjects = ["Where is my order {o}?", "Return request for {o}", "Item damaged in order {o}",
                "Payment problem with order {o}", "Cannot log in to my account"]
    subj = pc.if_else(pa.array(ctype == 4), pa.scalar(subjects[4]), pa.scalar(""))
    for k_ in range(4):
        a, b = subjects[k_].split("{o}")
        subj = pc.if_else(pa.array(ctype == k_), join(a, ords.order_id.take(pa.array(co)), b), subj)
    t_w = _cap(np.where(rng.random(ncs) < 0.85, cs_t + rng.exponential(8 * HOUR, ncs).astype(np.int64), NEVER), end)
    t_e = _cap(np.where((t_w < NEVER) & (rng.random(ncs) < 0.12), t_w + rng.exponential(1.5 * DAY, ncs).astype(np.int64), NEVER), end)
    last_t = np.where(t_e < NEVER, t_e, np.where(t_w < NEVER, t_w, cs_t))
    t_cl = _cap(np.where(rng.random(ncs) < 0.93, last_t + rng.exponential(3 * DAY, ncs).astype(np.int64), NEVER), end)
    cases = versioned(case_ids, cs_t, {
        "CaseNumber": strings_from_matrix(digit_matrix(1000 + np.arange(ncs), 8)),
        "ContactId": contact_ids.take(pa.array(cc)), "AccountId": acc_ids.take(pa.array(acc_of_contact[cc])),
        "Subject": subj, "Status": pa.array(["New"] * ncs, pa.string()),
        "Priority": take(["Low", "Medium", "High"], rng.choice(3, ncs, p=[.3, .55, .15])),
        "Origin": take(["Email", "Web", "Phone", "Chat"], rng.choice(4, ncs, p=[.4, .3, .15, .15])),
        "IsClosed": pa.array(np.zeros(ncs, bool)), "ClosedDate": pa.nulls(ncs, pa.timestamp("us", tz="UTC")),
        "Type": take(types, ctype),
    }, [(t_w, {"Status": pa.array(["Working"] * ncs, pa.string())}),
        (t_e, {"Status": pa.array(["Escalated"] * ncs, pa.string()),
               "Priority": pa.array(["High"] * ncs, pa.string())}),
        (t_cl, {"Status": pa.array(["Closed"] * ncs, pa.string()), "IsClosed": np.ones(ncs, bool),
                "ClosedDate": ts_array(np.where(t_cl < NEVER, t_cl, 0) // US * US)})], end)

    return {"tables": {"sf_account": account, "sf_contact": contact, "sf_lead": lead, "sf_opportunity": opp,
                       "sf_case": cases},
            "contact_ids": contact_ids, "contact_person": cp, "contact_email": email, "contact_deleted": t_del < NEVER,
            "lead_ids": lead_ids, "lead_person": l_person, "lead_email": l_email,
            "case_order": co, "prim_contact": prim_contact}


# ==========================================================================================
def _ads(ctx: Ctx, camps: Campaigns, ga4: GA4Result) -> dict:
    rng = ctx.rng("ads")
    ct = camps.table
    names = np.array(ct.column("campaign_name").to_pylist(), dtype=object)
    cids = ct.column("campaign_id").combine_chunks()
    out = {}
    for code, table_name in ((CH["paid_search"], "google_ads_campaign_daily"), (CH["paid_social"], "meta_campaign_daily")):
        cols = camps.paid_cols[code]
        days = np.arange(ctx.n_obs_days)
        dd, kk = np.meshgrid(days, np.arange(len(cols)), indexing="ij")
        dd, kk = dd.ravel(), kk.ravel()
        c = cols[kk]
        active = (dd >= camps.start_day[c]) & (dd <= camps.end_day[c])
        dd, c = dd[active], c[active]
        n = len(dd)
        spend = camps.spend[dd, c]
        sess = ga4.paid_sessions[dd, c]
        # every GA4 session through the ad was a click; GA4 misses ~20% of clicks (consent, bounces)
        clicks = np.maximum(np.ceil(sess / 0.8 + rng.poisson(sess * 0.05)),
                            rng.poisson(spend / (camps.cpc[c] * 2.5))).astype(np.int64)
        ctr_base = np.where(code == CH["paid_search"], 0.045, 0.011)
        ctr = np.clip(rng.normal(ctr_base, ctr_base * 0.15, n), ctr_base * 0.4, None)
        impressions = np.maximum(clicks, np.round(clicks / ctr + rng.integers(0, 50, n))).astype(np.int64)
        conv = np.round(ga4.paid_conversions[dd, c] * rng.uniform(0.85, 1.1, n), 2)
        date_us = ctx.start_us + dd * DAY
        # versions: 45% of days are first reported low and restated 1-7 days later
        restated = rng.random(n) < 0.45
        f = rng.uniform(0.88, 0.99, n)
        v1_at = date_us + DAY + rng.integers(2 * HOUR, 10 * HOUR, n)
        v2_at = date_us + rng.integers(2 * DAY, 8 * DAY, n)
        rows = np.concatenate([np.arange(n), np.flatnonzero(restated)])
        is_v2 = np.concatenate([np.zeros(n, bool), np.ones(restated.sum(), bool)])
        prelim = restated[rows] & ~is_v2
        fac = np.where(prelim, f[rows], 1.0)
        vis = np.where(is_v2, v2_at[rows], v1_at[rows])
        o = np.lexsort((is_v2, c[rows], dd[rows]))
        rows, fac, vis, is_v2 = rows[o], fac[o], vis[o], is_v2[o]
        cr = c[rows]
        d_ = date_array(date_us[rows])
        if code == CH["paid_search"]:
            out[table_name] = pa.table({
                "customer_id": pa.array(["1234567890"] * len(rows), pa.string()),
                "campaign_id": pa.array(camps.google_ids[cr], pa.int64()),
                "campaign_name": pa.array(names[cr].tolist(), pa.string()),
                "channel": pa.array(["paid_search"] * len(rows), pa.string()),
                "date": d_,
                "cost_micros": pa.array(np.round(spend[rows] * fac * 100).astype(np.int64) * 10_000, pa.int64()),
                "clicks": pa.array(np.floor(clicks[rows] * fac).astype(np.int64), pa.int64()),
                "impressions": pa.array(np.floor(impressions[rows] * fac).astype(np.int64), pa.int64()),
                "conversions": pa.array(np.round(conv[rows] * np.where(prelim, fac * 0.9, 1.0), 2), pa.float64()),
                "_visible_at": ts_array(vis),
            })
        else:
            out[table_name] = pa.table({
                "account_id": pa.array(["987654321012345"] * len(rows), pa.string()),
                "campaign_id": cids.take(pa.array(cr)),
                "campaign_name": pa.array(names[cr].tolist(), pa.string()),
                "date_start": d_,
                "spend": pa.array(np.round(spend[rows] * fac, 2), pa.float64()),
                "impressions": pa.array(np.floor(impressions[rows] * fac).astype(np.int64), pa.int64()),
                "clicks": pa.array(np.floor(clicks[rows] * fac).astype(np.int64), pa.int64()),
                "_visible_at": ts_array(vis),
            })
    out["campaigns"] = camps.table
    return out


# ==========================================================================================
def _truth(ctx: Ctx, camps: Campaigns, ppl: People, ords: Orders, ga4: GA4Result, st: dict, sf: dict,
           tables: dict) -> dict:
    end = ctx.end_excl_us
    N = ppl.n
    pid = ppl.person_id
    ok = ~ords.is_failed
    # horizon
    fut = ok & (ords.ordered_at >= end)
    n90 = np.bincount(ords.person[fut & (ords.ordered_at < end + 90 * DAY)], minlength=N)
    m365 = fut & (ords.ordered_at < end + 365 * DAY)
    n365 = np.bincount(ords.person[m365], minlength=N)
    net = (ords.amount_minor - ords.refunded_minor) * CUR_FX[ords.currency] / 100.0
    rev = np.bincount(ords.person[m365], weights=net[m365], minlength=N)
    gross = np.bincount(ords.person[m365], weights=ords.amount_usd[m365], minlength=N)
    alive = (ords.dropped_out_at < 0) | (ords.dropped_out_at >= end)
    obs_ok = ok & ords.in_obs
    n_obs = np.bincount(ords.person[obs_ok], minlength=N)
    horizon = pa.table({
        "person_id": pid,
        "purchases_next_90d": pa.array(n90, pa.int64()),
        "purchases_next_365d": pa.array(n365, pa.int64()),
        "revenue_next_365d_usd": pa.array(np.round(rev, 2), pa.float64()),
        "gross_revenue_next_365d_usd": pa.array(np.round(gross, 2), pa.float64()),
        "is_alive_at_end": pa.array(alive),
        "orders_in_observation": pa.array(n_obs, pa.int64()),
    })
    camp_ids = camps.table.column("campaign_id").combine_chunks()
    people = pa.table({
        "person_id": pid, "first_name": ppl.first, "last_name": ppl.last, "email": ppl.email,
        "phone": pc.if_else(pa.array((ppl.phone_changed_at >= 0) & (ppl.phone_changed_at < end)),
                            e164(ppl.country, ppl.new_phone_national), ppl.phone_e164),
        "previous_phone": null_where(~((ppl.phone_changed_at >= 0) & (ppl.phone_changed_at < end)), ppl.phone_e164),
        "country": take(COUNTRIES, ppl.country),
        "currency": take(CURRENCIES, ppl.currency),
        "acquisition_channel": take(CHANNELS, ppl.acq_channel),
        "acquisition_campaign": camp_ids.take(pa.array(ppl.acq_campaign)),
        "acquired_at": ts_array(ppl.acquired_at),
        "purchase_rate": pa.array(ppl.lam, pa.float64()),
        "dropout_prob": pa.array(ppl.p, pa.float64()),
        "spend_scale": pa.array(GG["p"] / ppl.nu, pa.float64()),
        "dropped_out_at": ts_array(np.maximum(ords.dropped_out_at, 0), mask=ords.dropped_out_at < 0),
        "is_churned_at_end": pa.array(n90 == 0),
        "has_opted_out": pa.array(ppl.opted_out),
        "web_user_id": join("u_", number_strings(ppl.web_user_num)),
        "n_devices": pa.array(ppl.n_devices.astype(np.int64)),
    })
    # orders
    n = ords.n
    cus = np.full(n, -1, dtype=np.int64)
    cus[st["oi"]] = st["order_cus"]
    sc = st["succ_charge_of_order"]
    seen = np.zeros(n, dtype=bool)
    seen[ga4.purchase_orders] = True
    is_tracked = np.where(ords.in_obs, seen, ords.tracked)
    outcome = np.where(ords.is_failed, "abandoned", np.where(ords.failed_first, "retried_succeeded", "succeeded"))
    orders = pa.table({
        "order_id": ords.order_id,
        "person_id": pid.take(pa.array(ords.person)),
        "ordered_at": ts_array(ords.ordered_at),
        "currency": take(CURRENCIES, ords.currency),
        "amount_minor": pa.array(ords.amount_minor, pa.int64()),
        "amount_usd": pa.array(ords.amount_usd, pa.float64()),
        "channel": take(CHANNELS, ords.channel),
        "campaign_id": camp_ids.take(pa.array(np.maximum(ords.campaign, 0))),
        "is_tracked_by_ga4": pa.array(is_tracked),
        "is_failed": pa.array(ords.is_failed),
        "payment_outcome": pa.array(outcome).cast(pa.string()),
        "refunded_minor": pa.array(ords.refunded_minor, pa.int64()),
        "refunded_at": ts_array(np.maximum(ords.refunded_at, 0), mask=ords.refunded_at < 0),
        "in_observation": pa.array(ords.in_obs),
        "order_seq": pa.array(ords.seq, pa.int64()),
        "stripe_customer_id": null_where(cus < 0, st["cus_ids"].take(pa.array(np.maximum(cus, 0)))),
        "stripe_charge_id": null_where(sc < 0, st["charge_ids"].take(pa.array(np.maximum(sc, 0)))),
    })
    # identity
    dev = np.flatnonzero(ga4.device_seen & (ga4.device_person >= 0))
    parts = []

    def add(source, ids, persons):
        persons = np.asarray(persons)
        parts.append(pa.table({
            "source": pa.array([source] * len(ids), pa.string()),
            "source_id": ids,
            "person_id": null_where(persons < 0, pid.take(pa.array(np.maximum(persons, 0)))),
        }))

    add("stripe_customer", st["cus_ids"], st["cperson"])
    add("sf_contact", sf["contact_ids"], sf["contact_person"])
    add("sf_lead", sf["lead_ids"], sf["lead_person"])
    web_uid = join("u_", number_strings(ppl.web_user_num))
    has_uid = np.zeros(N, bool)
    has_uid[np.unique(ords.person[ords.in_obs])] = True
    has_uid[ga4.uid_persons] = True
    add("ga4_user_id", web_uid.filter(pa.array(has_uid)), np.flatnonzero(has_uid))
    add("ga4_user_pseudo_id", ga4.device_pseudo.take(pa.array(dev)), ga4.device_person[dev])
    # e-mails seen in any source (normalised: trimmed, lower-case), person ones only
    em = pa.concat_arrays([st["c_email"], sf["contact_email"].cast(pa.string()),
                           sf["lead_email"].filter(pa.array(sf["lead_person"] >= 0)), ppl.email])
    ep = np.concatenate([st["cperson"], sf["contact_person"], sf["lead_person"][sf["lead_person"] >= 0], np.arange(N)])
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(em))
    et = pa.table({"e": norm, "p": ep}).filter(pc.is_valid(norm))
    et = et.group_by(["e", "p"], use_threads=False).aggregate([]).sort_by([("p", "ascending"), ("e", "ascending")])
    add("email", et.column("e").combine_chunks(), et.column("p").to_numpy())
    identity = pa.concat_tables(parts)
    return {"truth_people": people, "truth_identity": identity, "truth_orders": orders,
            "truth_person_horizon": horizon}
