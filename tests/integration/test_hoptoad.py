# ruff: noqa: E501 -- notices read best as the clients send them
"""Hoptoad / Airbrake notifier API v2 XML over real HTTP, a real stream, the worker step and PostgreSQL.

Bodies: Errbit's own test fixture shape (spec/fixtures/hoptoad_test_notice.xml, `hoptoad_notifier`
2.x), the `airbrake` Ruby gem 3.x notice (`<notice version="2.3">`, request vars nested), and the PyPI
`errbit` client's XML. That client needs Python 2 (and `xmlbuilder`, Python 2 only), which cannot be
installed here: ERRBIT_PY below is the XML its `xmlgenerator.generate_xml` writes, built from its source
(errbit/xmlgenerator.py: frames from `traceback.extract_tb`, oldest first, absolute paths;
`project-root` is os.getcwd(); `requests.post(url, data=xml)`, so no Content-Type).
What was stored is read back through the query API.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import ProjectInfo, drain
from tests.integration.test_exceptioner import notice as exceptioner_notice
from tests.integration.test_exceptioner import post as exceptioner_post

PATH = "/notifier_api/v2/notices"

# Errbit's spec/fixtures/hoptoad_test_notice.xml shape (hoptoad_notifier 2.3, `rake hoptoad:test`).
ERRBIT_FIXTURE = """<?xml version="1.0" encoding="UTF-8"?>
<notice version="2.0">
  <api-key>{key}</api-key>
  <notifier>
    <name>Hoptoad Notifier</name>
    <version>2.3.2</version>
    <url>http://hoptoadapp.com</url>
  </notifier>
  <error>
    <class>HoptoadTestingException</class>
    <message>HoptoadTestingException: Testing hoptoad via "rake hoptoad:test". If you can see this, it works.</message>
    <backtrace>
      <line number="425" file="[GEM_ROOT]/gems/activesupport-2.3.8/lib/active_support/testing/setup_and_teardown.rb" method="abstract_method"/>
      <line number="1" file="[PROJECT_ROOT]/vendor/plugins/hoptoad_notifier/lib/hoptoad_tasks.rb" method="verify"/>
      <line number="" file="" method=""/>
    </backtrace>
  </error>
  <request>
    <url>http://example.org/verify/cupcake=fistfight&amp;lovebird=doomsayer</url>
    <component>application</component>
    <action>verify</action>
    <params>
      <var key="controller">application</var>
      <var key="action">verify</var>
      <var key="foo">bar</var>
    </params>
    <session>
      <var key="session_id">1234</var>
    </session>
    <cgi-data>
      <var key="SERVER_NAME">example.org</var>
      <var key="HTTP_USER_AGENT">Mozilla</var>
    </cgi-data>
  </request>
  <server-environment>
    <project-root>/path/to/sample/project</project-root>
    <environment-name>development</environment-name>
  </server-environment>
  <current-user>
    <id>123</id>
    <name>Mr. Bean</name>
    <email>mr.bean@example.com</email>
    <username>mrbean</username>
  </current-user>
  <framework>Rails: 2.3.8</framework>
</notice>
"""

# The airbrake gem 3.1 (`Airbrake::Notice#to_xml`): paths under project-root, nested params.
AIRBRAKE_GEM = """<?xml version="1.0" encoding="UTF-8"?>
<notice version="2.3"><api-key>{key}</api-key><notifier><name>Airbrake Notifier</name><version>3.1.6</version><url>https://github.com/airbrake/airbrake</url></notifier><error><class>NoMethodError</class><message>NoMethodError: undefined method `upcase' for nil:NilClass</message><backtrace><line number="42" file="/srv/shop/releases/20240301/app/models/user.rb" method="full_name"/><line number="10" file="/srv/shop/releases/20240301/app/controllers/users_controller.rb" method="show"/><line number="6" file="[GEM_ROOT]/gems/actionpack-6.0.3/lib/action_controller/metal/basic_implicit_render.rb" method="send_action"/></backtrace></error><request><url>http://shop.example/users/7</url><component>users</component><action>show</action><params><var key="id">7</var><var key="user"><var key="name">Ann</var><var key="address"><var key="city">Oslo</var></var></var></params><cgi-data><var key="HTTP_HOST">shop.example</var></cgi-data></request><server-environment><project-root>/srv/shop/releases/20240301</project-root><environment-name>production</environment-name><app-version>4.2.0</app-version><hostname>web-1</hostname></server-environment></notice>"""

# The same bug through Exceptioner (its README's shape): must land in the same error.
EXCEPTIONER_BACKTRACE = [
    "[PROJECT_ROOT]/app/models/user.rb:42:in `full_name'",
    "[PROJECT_ROOT]/app/controllers/users_controller.rb:10:in `show'",
    "[GEM_ROOT]/gems/actionpack-6.0.3/lib/action_controller/metal/basic_implicit_render.rb:6:in `send_action'",
]

# PyPI errbit (4teamwork/errbit-python) generate_xml for `raise KeyError('sku-42')` three calls deep,
# ERRBIT_ENVIRONMENT=production, run from /srv/shop: SCHEMA_VERSION 2.3, frames oldest first.
ERRBIT_PY = """<?xml version="1.0" encoding="utf-8" ?>
<notice version="2.3">
    <api-key>{key}</api-key>
    <notifier>
        <name>errbit</name>
        <version>1.3.0</version>
        <url>https://github.com/4teamwork/errbit-python</url>
    </notifier>
    <error>
        <class>KeyError</class>
        <message>'sku-42'</message>
        <backtrace>
            <line method="&lt;module&gt;" file="/srv/shop/run.py" number="30" />
            <line method="checkout" file="/srv/shop/shop/cart.py" number="14" />
            <line method="price" file="/srv/shop/shop/catalog.py" number="7" />
        </backtrace>
    </error>
    <server-environment>
        <environment-name>production</environment-name>
        <project-root>/srv/shop</project-root>
    </server-environment>
</notice>
"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<notice version="2.3"><api-key>{key}</api-key><error><class>E</class><message>&lol9;</message></error></notice>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE notice [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<notice version="2.3"><api-key>{key}</api-key><error><class>E</class><message>&xxe;</message></error></notice>
"""


async def post(
    gateway: TestClient, body: str | bytes, path: str = PATH, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    data = body.encode() if isinstance(body, str) else body
    resp = await gateway.post(path, data=data, headers=headers or {"Content-Type": "text/xml"})
    return resp.status, await resp.text(), resp.headers


def answer_ids(text: str) -> tuple[str, str]:
    """(notice id, location id) from Errbit's `<notice><id>…</id><url>…/locate/…</url></notice>`."""
    m = re.search(r"<notice><id>([0-9a-f-]{36})</id><url>[^<]*/locate/([0-9a-f-]{36})</url></notice>", text)
    assert m, text
    return m.group(1), m.group(2)


async def located(query: TestClient, token: str, location_id: str) -> dict[str, Any]:
    resp = await query.get(f"/api/locate/{location_id}", headers={"Api-Key": token})
    assert resp.status == 200, await resp.text()
    loc = await resp.json()
    h = {"Api-Key": token}
    resp = await query.get(f"/v1/errors/{loc['error_id']}/notices/{loc['notice_id']}", headers=h)
    assert resp.status == 200
    return {**await resp.json(), "error_id": loc["error_id"]}


async def test_errbit_fixture_is_answered_as_errbit_and_stored_whole(
    gateway, query, consumer, project, user_token, settings
):
    status, text, headers = await post(gateway, ERRBIT_FIXTURE.format(key=project.key))
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    notice_id, location_id = answer_ids(text)
    assert f"<url>{settings.public_url}/locate/{location_id}</url>" in text
    await drain(consumer)
    n = await located(query, user_token, location_id)
    assert n["id"] == notice_id and n["protocol"] == "hoptoad"
    assert n["exception"] == "HoptoadTestingException"
    assert n["message"].startswith('HoptoadTestingException: Testing hoptoad via "rake hoptoad:test"')
    assert n["mode"] == "development"
    frames = n["exceptions"][0]["frames"]
    assert [(f["file"], f["function"], f["line"]) for f in frames] == [
        (
            "[GEM_ROOT]/gems/activesupport-2.3.8/lib/active_support/testing/setup_and_teardown.rb",
            "abstract_method",
            425,
        ),
        ("[PROJECT_ROOT]/vendor/plugins/hoptoad_notifier/lib/hoptoad_tasks.rb", "verify", 1),
    ]  # the empty line left out
    assert n["parameters"] == {"controller": "application", "action": "verify", "foo": "bar"}
    assert n["session"] == {"session_id": "[Filtered]"}  # scrubbed like every protocol's session ids
    assert n["environment"] == {"SERVER_NAME": "example.org", "HTTP_USER_AGENT": "Mozilla"}
    assert n["user"]["email"] == "mr.bean@example.com" and n["user"]["id"] == "123"
    assert n["context"]["url"] == "http://example.org/verify/cupcake=fistfight&lovebird=doomsayer"
    assert (n["context"]["component"], n["context"]["action"]) == ("application", "verify")
    assert n["context"]["notifier"]["name"] == "Hoptoad Notifier"


async def test_airbrake_gem_notice_on_the_xml_route_folds_with_exceptioner(
    gateway, query, consumer, project, user_token
):
    status, text, _ = await post(gateway, AIRBRAKE_GEM.format(key=project.key), PATH + ".xml")
    assert status == 200
    _, location_id = answer_ids(text)
    body = exceptioner_notice(
        exception="NoMethodError",
        message="undefined method `upcase' for nil:NilClass",
        backtrace=EXCEPTIONER_BACKTRACE,
    )
    status, answered = await exceptioner_post(gateway, project.key, body)
    assert status == 201
    await drain(consumer)
    n = await located(query, user_token, location_id)
    assert n["error_id"] == answered["error_id"]  # one error, whichever protocol reported it
    frames = n["exceptions"][0]["frames"]
    assert frames[0]["file"] == "[PROJECT_ROOT]/app/models/user.rb"  # project-root stripped
    assert n["parameters"] == {"id": "7", "user": {"name": "Ann", "address": {"city": "Oslo"}}}
    assert (n["release"], n["hostname"], n["mode"]) == ("4.2.0", "web-1", "production")
    h = {"Api-Key": user_token}
    error = await (await query.get(f"/v1/errors/{answered['error_id']}", headers=h)).json()
    assert error["notices_count"] == 2


async def test_pypi_errbit_client_xml_frames_come_newest_first(gateway, query, consumer, project, user_token):
    # requests.post(url, data=xml_string): no Content-Type at all.
    status, text, _ = await post(gateway, ERRBIT_PY.format(key=project.key), headers={})
    assert status == 200
    _, location_id = answer_ids(text)
    await drain(consumer)
    n = await located(query, user_token, location_id)
    assert (n["exception"], n["message"], n["mode"]) == ("KeyError", "'sku-42'", "production")
    assert [(f["file"], f["function"]) for f in n["exceptions"][0]["frames"]] == [
        ("[PROJECT_ROOT]/shop/catalog.py", "price"),
        ("[PROJECT_ROOT]/shop/cart.py", "checkout"),
        ("[PROJECT_ROOT]/run.py", "<module>"),
    ]


async def stream_length(redis, settings) -> int:
    total = 0
    async for key in redis.scan_iter(match=f"{settings.stream_prefix}:notices*"):
        if await redis.type(key) == b"stream":
            total += await redis.xlen(key)
    return total


async def test_errbit_refusals_queue_nothing(gateway, redis, settings, project, user_token):
    before = await stream_length(redis, settings)
    cases = [
        (ERRBIT_FIXTURE.format(key="0" * 32), 422, "Your API key is unknown"),
        (ERRBIT_FIXTURE.replace("<api-key>{key}</api-key>", ""), 422, "Your API key is unknown"),
        (ERRBIT_FIXTURE.format(key=project.key)[:-30], 422, "The provided XML was not well-formed"),
        ("{}", 422, "The provided XML was not well-formed"),
        (BILLION_LAUGHS.format(key=project.key), 422, "refused"),
        (EXTERNAL.format(key=project.key), 422, "refused"),
        (f"<error><api-key>{project.key}</api-key></error>", 422, "<notice>"),
        ("", 400, "Need a data params"),
        (ERRBIT_FIXTURE.format(key=user_token), 403, "user-scoped"),
    ]
    for body, status, text in cases:
        got, answer, headers = await post(gateway, body)
        assert (got, text in answer) == (status, True), (body[:80], got, answer)
        assert headers["Content-Type"].startswith("text/plain")
    assert await stream_length(redis, settings) == before


async def test_a_notice_without_error_is_dead_lettered_not_lost(
    gateway, query, consumer, project, user_token
):
    body = f'<notice version="2.3"><api-key>{project.key}</api-key></notice>'
    status, _, _ = await post(gateway, body)
    assert status == 200  # Errbit too answers before it builds the error
    await drain(consumer)
    resp = await query.get(f"/v1/dead-letters?project_id={project.id}", headers={"Api-Key": user_token})
    letters = await resp.json()
    assert any(d["protocol"] == "hoptoad" and "without <error>" in d["reason"] for d in letters), letters


async def test_cors_preflight_on_the_v2_route(gateway):
    resp = await gateway.options(
        PATH, headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    )
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"


async def test_ingest_counted_per_protocol(gateway, consumer, project: ProjectInfo):
    await post(gateway, ERRBIT_FIXTURE.format(key=project.key))
    text = await (await gateway.get("/metrics")).text()
    assert re.search(r'\w*notices_accepted_total\{protocol="hoptoad"\} [1-9]', text)
    await drain(consumer)


async def test_hostile_bodies_are_bounded(gateway, query, consumer, project, user_token):
    # Elements nested past 128 levels: refused at the gateway (400), as nested JSON is.
    deep = "<a>" * 5000 + "x" + "</a>" * 5000
    body = f'<notice version="2.3"><api-key>{project.key}</api-key><error><class>E</class><message>{deep}</message></error></notice>'
    status, text, _ = await post(gateway, body)
    assert (status, "nested deeper than 128" in text) == (400, True)
    # 2,000 backtrace lines and a var tree 100 levels deep: stored, cut and truncated, each noted.
    lines = '<line file="a.rb" number="1" method="m"/>' * 2000
    params = '<var key="a">' * 100 + "x" + "</var>" * 100
    body = (
        f'<notice version="2.3"><api-key>{project.key}</api-key><error><class>E</class><message>m</message>'
        f"<backtrace>{lines}</backtrace></error><request><params>{params}</params></request></notice>"
    )
    status, text, _ = await post(gateway, body)
    assert status == 200, text
    _, location_id = answer_ids(text)
    await drain(consumer)
    n = await located(query, user_token, location_id)
    assert len(n["exceptions"][0]["frames"]) == 500
    depth, value = 0, n["parameters"]
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    assert value == "[Truncated]" and depth < 100
