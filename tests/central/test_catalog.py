"""The catalog of License Central through the admin API: products, features, releases, policies, customers."""

from __future__ import annotations

import asyncio

import pytest
from licensor.model import new_id

from .conftest import Tenant

MISSING_PRODUCT = new_id("prd")


# --- create, read, update, delete ----------------------------------------------------------------------
async def test_a_product_is_created_read_listed_updated_and_deleted(tenant: Tenant) -> None:
    created = await tenant.ok(
        "POST", "/v1/admin/products", 201, json={"code": "studio", "name": "Studio", "description": "Paint"}
    )
    assert created["object"] == "product" and created["id"].startswith("prd_")
    assert (created["code"], created["name"], created["description"]) == ("studio", "Studio", "Paint")
    assert created["created_at"] == created["updated_at"]

    assert await tenant.ok("GET", f"/v1/admin/products/{created['id']}") == created
    assert [p["id"] for p in (await tenant.ok("GET", "/v1/admin/products"))["data"]] == [created["id"]]

    updated = await tenant.ok(
        "PATCH", f"/v1/admin/products/{created['id']}", 200, json={"name": "Studio Pro", "description": None}
    )
    assert (updated["name"], updated["description"], updated["code"]) == ("Studio Pro", None, "studio")
    assert updated["created_at"] == created["created_at"] and updated["updated_at"] >= created["updated_at"]
    assert await tenant.ok("GET", f"/v1/admin/products/{created['id']}") == updated

    deleted = await tenant.ok("DELETE", f"/v1/admin/products/{created['id']}", 200)
    assert deleted == {"id": created["id"], "object": "product", "deleted": True}
    gone = await tenant.call("GET", f"/v1/admin/products/{created['id']}")
    assert (gone.status, gone.code) == (404, "PRODUCT_NOT_FOUND")
    again = await tenant.call("DELETE", f"/v1/admin/products/{created['id']}")
    assert (again.status, again.code) == (404, "PRODUCT_NOT_FOUND")
    assert (await tenant.ok("GET", "/v1/admin/products"))["data"] == []


async def test_an_immutable_field_cannot_be_updated_and_an_empty_update_is_refused(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    code = await tenant.call("PATCH", f"/v1/admin/products/{product['id']}", json={"code": "other"})
    assert (code.status, code.code) == (422, "UNKNOWN_FIELD")
    empty = await tenant.call("PATCH", f"/v1/admin/products/{product['id']}", json={})
    assert (empty.status, empty.code) == (422, "INVALID_FIELD")
    assert await tenant.ok("GET", f"/v1/admin/products/{product['id']}") == product


async def test_features_releases_policies_and_customers_are_created_updated_and_deleted(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    feature = await tenant.feature(product["id"], "export", metered=True, unit="pages")
    assert (feature["product_id"], feature["code"], feature["metered"], feature["unit"]) == (
        product["id"],
        "export",
        True,
        "pages",
    )
    feature = await tenant.ok("PATCH", f"/v1/admin/features/{feature['id']}", 200, json={"metered": False, "unit": None})
    assert (feature["metered"], feature["unit"]) == (False, None)

    release = await tenant.ok(
        "POST",
        "/v1/admin/releases",
        201,
        json={
            "product_id": product["id"],
            "version": "2.1.0",
            "required_features": ["export"],
            "released_at": "2026-01-02T03:04:05Z",
        },
    )
    assert (release["channel"], release["required_features"], release["released_at"]) == (
        "stable",
        ["export"],
        "2026-01-02T03:04:05.000000Z",
    )
    release = await tenant.ok(
        "PATCH", f"/v1/admin/releases/{release['id']}", 200, json={"channel": "beta", "required_features": []}
    )
    assert (release["channel"], release["required_features"]) == ("beta", [])

    policy = await tenant.policy(
        product["id"],
        seats=5,
        duration={"kind": "subscription", "days": 365},
        maintenance_days=30,
        features=[{"code": "export", "quantity": 100}],
        options={"max_major_version": 3},
    )
    assert (policy["seats"], policy["duration"], policy["maintenance_days"]) == (5, {"kind": "subscription", "days": 365}, 30)
    assert (policy["features"], policy["options"], policy["backend"]) == (
        [{"code": "export", "quantity": 100}],
        {"max_major_version": 3},
        "example",
    )
    defaults = await tenant.policy(product["id"])
    assert (defaults["seats"], defaults["duration"], defaults["features"], defaults["options"]) == (
        1,
        {"kind": "perpetual"},
        [],
        {},
    )
    policy = await tenant.ok("PATCH", f"/v1/admin/policies/{policy['id']}", 200, json={"seats": 10, "maintenance_days": None})
    assert (policy["seats"], policy["maintenance_days"]) == (10, None)

    customer = await tenant.customer("ada@example.com", external_ref="crm-1")
    customer = await tenant.ok("PATCH", f"/v1/admin/customers/{customer['id']}", 200, json={"email": "ada@example.org"})
    assert (customer["email"], customer["external_ref"]) == ("ada@example.org", "crm-1")

    for path in (
        f"/v1/admin/policies/{policy['id']}",
        f"/v1/admin/policies/{defaults['id']}",
        f"/v1/admin/releases/{release['id']}",
        f"/v1/admin/features/{feature['id']}",
        f"/v1/admin/customers/{customer['id']}",
        f"/v1/admin/products/{product['id']}",
    ):
        assert (await tenant.ok("DELETE", path, 200))["deleted"] is True
        assert (await tenant.call("GET", path)).status == 404


async def test_a_malformed_object_id_in_the_path_is_a_404(tenant: Tenant) -> None:
    for path in (
        "/v1/admin/products/nope",
        "/v1/admin/products/fea_01HZZZZZZZZZZZZZZZZZZZZZZZ",
        f"/v1/admin/products/{new_id('prd')}",
    ):
        answer = await tenant.call("GET", path)
        assert answer.status == 404, path


# --- uniqueness and references -------------------------------------------------------------------------
async def test_a_duplicate_product_code_is_a_409_product_already_exists(tenant: Tenant) -> None:
    await tenant.product("studio")
    duplicate = await tenant.call("POST", "/v1/admin/products", json={"code": "studio", "name": "Another"})
    assert (duplicate.status, duplicate.code) == (409, "PRODUCT_ALREADY_EXISTS")
    assert len((await tenant.ok("GET", "/v1/admin/products"))["data"]) == 1


async def test_a_duplicate_customer_email_is_a_409_on_create_and_on_update(tenant: Tenant) -> None:
    await tenant.customer("ada@example.com")
    bob = await tenant.customer("bob@example.com")
    duplicate = await tenant.call("POST", "/v1/admin/customers", json={"email": "ada@example.com", "name": "Ada 2"})
    assert (duplicate.status, duplicate.code) == (409, "CUSTOMER_ALREADY_EXISTS")
    taken = await tenant.call("PATCH", f"/v1/admin/customers/{bob['id']}", json={"email": "ada@example.com"})
    assert (taken.status, taken.code) == (409, "CUSTOMER_ALREADY_EXISTS")
    # Keeping one's own e-mail is no conflict.
    assert (await tenant.ok("PATCH", f"/v1/admin/customers/{bob['id']}", 200, json={"email": "bob@example.com", "name": "Bob"}))[
        "name"
    ] == "Bob"


async def test_feature_codes_and_release_versions_are_unique_per_product_and_channel(tenant: Tenant) -> None:
    studio, reader = await tenant.product("studio"), await tenant.product("reader")
    await tenant.feature(studio["id"], "export")
    duplicate = await tenant.call(
        "POST", "/v1/admin/features", json={"product_id": studio["id"], "code": "export", "name": "Again"}
    )
    assert (duplicate.status, duplicate.code) == (409, "FEATURE_ALREADY_EXISTS")
    await tenant.feature(reader["id"], "export")  # another product may use the code

    body = {"product_id": studio["id"], "version": "1.0.0"}
    await tenant.ok("POST", "/v1/admin/releases", 201, json=body)
    again = await tenant.call("POST", "/v1/admin/releases", json=body)
    assert (again.status, again.code) == (409, "RELEASE_ALREADY_EXISTS")
    await tenant.ok("POST", "/v1/admin/releases", 201, json={**body, "channel": "beta"})
    await tenant.ok("POST", "/v1/admin/releases", 201, json={**body, "product_id": reader["id"]})


async def test_deleting_an_object_still_in_use_is_a_409_resource_in_use(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    feature = await tenant.feature(product["id"], "export")
    in_use = await tenant.call("DELETE", f"/v1/admin/products/{product['id']}")
    assert (in_use.status, in_use.code) == (409, "RESOURCE_IN_USE")
    assert await tenant.ok("GET", f"/v1/admin/products/{product['id']}") == product

    await tenant.ok("DELETE", f"/v1/admin/features/{feature['id']}")
    policy = await tenant.policy(product["id"])
    customer = await tenant.customer("ada@example.com")
    await tenant.license(policy["id"], customer_id=customer["id"])
    for path in (
        f"/v1/admin/products/{product['id']}",
        f"/v1/admin/policies/{policy['id']}",
        f"/v1/admin/customers/{customer['id']}",
    ):
        answer = await tenant.call("DELETE", path)
        assert (answer.status, answer.code) == (409, "RESOURCE_IN_USE"), path
        assert (await tenant.call("GET", path)).status == 200


async def test_a_reference_to_a_missing_object_is_a_422_reference_not_found(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"])
    refused = {
        "/v1/admin/features": {"product_id": MISSING_PRODUCT, "code": "export", "name": "Export"},
        "/v1/admin/releases": {"product_id": MISSING_PRODUCT, "version": "1.0"},
        "/v1/admin/policies": {"product_id": MISSING_PRODUCT, "name": "P", "backend": "example"},
        "/v1/admin/licenses": {"policy_id": new_id("pol")},
        "/v1/admin/tokens": {"name": "saas", "role": "product", "product_id": MISSING_PRODUCT},
    }
    for path, body in refused.items():
        answer = await tenant.call("POST", path, json=body)
        assert (answer.status, answer.code) == (422, "REFERENCE_NOT_FOUND"), path
    with_customer = await tenant.call(
        "POST", "/v1/admin/licenses", json={"policy_id": policy["id"], "customer_id": new_id("cus")}
    )
    assert (with_customer.status, with_customer.code) == (422, "REFERENCE_NOT_FOUND")
    license_ = await tenant.license(policy["id"])
    moved = await tenant.call("PATCH", f"/v1/admin/licenses/{license_['id']}", json={"customer_id": new_id("cus")})
    assert (moved.status, moved.code) == (422, "REFERENCE_NOT_FOUND")
    assert (await tenant.ok("GET", "/v1/admin/features"))["data"] == []
    assert [lic["id"] for lic in (await tenant.ok("GET", "/v1/admin/licenses"))["data"]] == [license_["id"]]


# --- policies ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "duration",
    [{"kind": "perpetual", "days": 30}, {"kind": "subscription"}, {"kind": "trial"}],
    ids=["perpetual-with-days", "subscription-without-days", "trial-without-days"],
)
async def test_a_policy_duration_needs_days_exactly_when_it_is_not_perpetual(tenant: Tenant, duration: dict) -> None:
    product = await tenant.product("studio")
    answer = await tenant.call(
        "POST", "/v1/admin/policies", json={"product_id": product["id"], "name": "P", "backend": "example", "duration": duration}
    )
    assert (answer.status, answer.code) == (422, "INVALID_FIELD")
    assert (await tenant.ok("GET", "/v1/admin/policies"))["data"] == []


async def test_policy_durations_are_validated_on_update_too(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    trial = await tenant.policy(product["id"], duration={"kind": "trial", "days": 14})
    assert trial["duration"] == {"kind": "trial", "days": 14}
    for duration, code in (
        ({"kind": "perpetual", "days": 1}, "INVALID_FIELD"),
        ({"kind": "subscription"}, "INVALID_FIELD"),
        ({"kind": "trial", "days": 0}, "INVALID_FIELD"),
        ({"kind": "trial", "days": 36501}, "INVALID_FIELD"),
        ({"kind": "forever"}, "INVALID_FIELD"),
        ({"kind": "trial", "days": "14"}, "WRONG_TYPE"),
        ({"kind": "trial", "days": 14, "hours": 1}, "UNKNOWN_FIELD"),
    ):
        answer = await tenant.call("PATCH", f"/v1/admin/policies/{trial['id']}", json={"duration": duration})
        assert (answer.status, answer.code) == (422, code), duration
    perpetual = await tenant.ok("PATCH", f"/v1/admin/policies/{trial['id']}", 200, json={"duration": {"kind": "perpetual"}})
    assert perpetual["duration"] == {"kind": "perpetual"}


async def test_a_policy_with_integral_numbers_written_as_decimals_stores_integers(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"], seats=3.0, maintenance_days=10.0, duration={"kind": "subscription", "days": 30.0})
    assert (policy["seats"], policy["maintenance_days"], policy["duration"]) == (3, 10, {"kind": "subscription", "days": 30})
    assert all(isinstance(value, int) for value in (policy["seats"], policy["maintenance_days"], policy["duration"]["days"]))
    license_ = await tenant.license(policy["id"], starts_at="2026-01-01T00:00:00Z")
    assert (license_["expires_at"], license_["maintenance_until"]) == (
        "2026-01-31T00:00:00.000000Z",
        "2026-01-11T00:00:00.000000Z",
    )


async def test_a_policy_may_only_name_features_of_its_product(tenant: Tenant) -> None:
    studio, reader = await tenant.product("studio"), await tenant.product("reader")
    await tenant.feature(studio["id"], "export")
    await tenant.feature(reader["id"], "annotate")
    base = {"product_id": studio["id"], "name": "P", "backend": "example"}
    for features in ([{"code": "missing"}], [{"code": "annotate"}], [{"code": "export"}, {"code": "missing"}]):
        answer = await tenant.call("POST", "/v1/admin/policies", json={**base, "features": features})
        assert (answer.status, answer.code) == (422, "UNKNOWN_FEATURE"), features
    twice = await tenant.call(
        "POST", "/v1/admin/policies", json={**base, "features": [{"code": "export"}, {"code": "export", "quantity": 2}]}
    )
    assert (twice.status, twice.code) == (422, "INVALID_FIELD")
    policy = await tenant.policy(studio["id"], features=[{"code": "export", "quantity": None}])
    update = await tenant.call("PATCH", f"/v1/admin/policies/{policy['id']}", json={"features": [{"code": "annotate"}]})
    assert (update.status, update.code) == (422, "UNKNOWN_FEATURE")
    assert (await tenant.ok("GET", f"/v1/admin/policies/{policy['id']}"))["features"] == [{"code": "export", "quantity": None}]

    release = await tenant.call(
        "POST", "/v1/admin/releases", json={"product_id": studio["id"], "version": "1.0", "required_features": ["annotate"]}
    )
    assert (release.status, release.code) == (422, "UNKNOWN_FEATURE")
    created = await tenant.ok(
        "POST", "/v1/admin/releases", 201, json={"product_id": studio["id"], "version": "1.0", "required_features": ["export"]}
    )
    changed = await tenant.call("PATCH", f"/v1/admin/releases/{created['id']}", json={"required_features": ["missing"]})
    assert (changed.status, changed.code) == (422, "UNKNOWN_FEATURE")


async def test_a_policy_backend_and_product_are_fixed_once_created(tenant: Tenant) -> None:
    product = await tenant.product("studio")
    policy = await tenant.policy(product["id"])
    for change in ({"backend": "cloud-lite"}, {"product_id": product["id"]}):
        answer = await tenant.call("PATCH", f"/v1/admin/policies/{policy['id']}", json=change)
        assert (answer.status, answer.code) == (422, "UNKNOWN_FIELD"), change


# --- lists: filters and pagination ---------------------------------------------------------------------
async def test_lists_walk_every_object_once_in_creation_order_across_pages(tenant: Tenant) -> None:
    # Lists are in id order, which is creation order (to the millisecond; ties are in random order).
    created = sorted([(await tenant.customer(f"user{i}@example.com"))["id"] for i in range(7)])
    pages, params = [], {"limit": "3"}
    while True:
        page = await tenant.ok("GET", "/v1/admin/customers", params=params)
        pages.append([c["id"] for c in page["data"]])
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        params = {"limit": "3", "cursor": page["next_cursor"]}
    assert pages == [created[0:3], created[3:6], created[6:7]]
    exact = await tenant.ok("GET", "/v1/admin/customers", params={"limit": "7"})
    assert (len(exact["data"]), exact["has_more"], exact["next_cursor"]) == (7, False, None)
    default = await tenant.ok("GET", "/v1/admin/customers")
    assert [c["id"] for c in default["data"]] == created


async def test_lists_filter_by_their_declared_fields_and_page_within_the_filter(tenant: Tenant) -> None:
    studio, reader = await tenant.product("studio"), await tenant.product("reader")
    studio_features = sorted([(await tenant.feature(studio["id"], f"f{i}"))["id"] for i in range(5)])
    await tenant.feature(reader["id"], "f0")
    assert [
        f["id"] for f in await tenant.list_all("/v1/admin/features", limit=2, params={"product_id": studio["id"]})
    ] == studio_features
    by_code = await tenant.ok("GET", "/v1/admin/features", params={"code": "f0"})
    assert sorted(f["product_id"] for f in by_code["data"]) == sorted([studio["id"], reader["id"]])
    assert [p["id"] for p in (await tenant.ok("GET", "/v1/admin/products", params={"code": "reader"}))["data"]] == [reader["id"]]

    await tenant.ok("POST", "/v1/admin/releases", 201, json={"product_id": studio["id"], "version": "1.0"})
    beta = await tenant.ok(
        "POST", "/v1/admin/releases", 201, json={"product_id": studio["id"], "version": "1.1", "channel": "beta"}
    )
    assert [r["id"] for r in (await tenant.ok("GET", "/v1/admin/releases", params={"channel": "beta"}))["data"]] == [beta["id"]]
    assert [r["id"] for r in (await tenant.ok("GET", "/v1/admin/releases", params={"version": "1.1"}))["data"]] == [beta["id"]]

    cloud = await tenant.policy(studio["id"])
    activation = await tenant.policy(reader["id"], backend="cloud-lite")
    assert [p["id"] for p in (await tenant.ok("GET", "/v1/admin/policies", params={"backend": "cloud-lite"}))["data"]] == [
        activation["id"]
    ]
    assert [p["id"] for p in (await tenant.ok("GET", "/v1/admin/policies", params={"product_id": studio["id"]}))["data"]] == [
        cloud["id"]
    ]

    ada = await tenant.customer("ada@example.com", external_ref="crm-7")
    await tenant.customer("bob@example.com")
    assert [c["id"] for c in (await tenant.ok("GET", "/v1/admin/customers", params={"email": "ada@example.com"}))["data"]] == [
        ada["id"]
    ]
    assert [c["id"] for c in (await tenant.ok("GET", "/v1/admin/customers", params={"external_ref": "crm-7"}))["data"]] == [
        ada["id"]
    ]

    first = await tenant.license(cloud["id"], customer_id=ada["id"], order_ref="order-1")
    second = await tenant.license(activation["id"])
    await tenant.ok("POST", f"/v1/admin/licenses/{second['id']}/suspend")
    for params, expected in (
        ({"state": "suspended"}, [second["id"]]),
        ({"state": "active"}, [first["id"]]),
        ({"customer_id": ada["id"]}, [first["id"]]),
        ({"policy_id": activation["id"]}, [second["id"]]),
        ({"product_id": studio["id"]}, [first["id"]]),
        ({"order_ref": "order-1"}, [first["id"]]),
        ({"state": "revoked"}, []),
    ):
        assert [lic["id"] for lic in (await tenant.ok("GET", "/v1/admin/licenses", params=params))["data"]] == expected, params


async def test_a_filter_value_that_cannot_match_the_field_is_refused(tenant: Tenant) -> None:
    for path, params in (
        ("/v1/admin/licenses", {"state": "sleeping"}),
        ("/v1/admin/features", {"product_id": "nope"}),
        ("/v1/admin/products", {"code": "UPPER"}),
        ("/v1/admin/products", {"limit": "0"}),
        ("/v1/admin/products", {"limit": "201"}),
        ("/v1/admin/products", {"limit": "ten"}),
    ):
        answer = await tenant.call("GET", path, params=params)
        assert (answer.status, answer.code) == (400, "INVALID_PARAMETER"), (path, params)


# --- roles ---------------------------------------------------------------------------------------------
async def test_roles_decide_who_changes_the_catalog_and_customers(tenant: Tenant) -> None:
    tokens = await tenant.tokens()
    product = await tenant.ok("POST", "/v1/admin/products", 201, token=tokens["developer"], json={"code": "dev", "name": "Dev"})
    refused = await tenant.call("POST", "/v1/admin/products", token=tokens["support"], json={"code": "sup", "name": "Sup"})
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    await tenant.ok("POST", "/v1/admin/customers", 201, token=tokens["support"], json={"email": "s@example.com", "name": "S"})
    for role in ("developer", "support", "read-only"):
        assert (await tenant.ok("GET", f"/v1/admin/products/{product['id']}", token=tokens[role])) == product
    product_token = await tenant.token("product", product_id=product["id"])
    answer = await tenant.call("GET", "/v1/admin/products", token=product_token)
    assert (answer.status, answer.code) == (403, "FORBIDDEN")


async def test_concurrent_duplicates_get_the_same_stable_409_as_sequential_ones(tenant: Tenant) -> None:
    products = await asyncio.gather(
        *(tenant.call("POST", "/v1/admin/products", json={"code": "same", "name": f"P{i}"}) for i in range(20))
    )
    assert sorted((a.status, a.code) for a in products) == [(201, None)] + [(409, "PRODUCT_ALREADY_EXISTS")] * 19
    customers = [await tenant.customer(f"c{i}@example.com") for i in range(10)]
    renamed = await asyncio.gather(
        *(tenant.call("PATCH", f"/v1/admin/customers/{c['id']}", json={"email": "taken@example.com"}) for c in customers)
    )
    assert sorted((a.status, a.code) for a in renamed) == [(200, None)] + [(409, "CUSTOMER_ALREADY_EXISTS")] * 9
    assert len(await tenant.list_all("/v1/admin/customers", params={"email": "taken@example.com"})) == 1
