"""The Hoptoad v2 decoder is total: any body the gateway could accept becomes a notice or Undecodable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.protocols import hoptoad
from shared.protocols.base import Undecodable
from shared.protocols.ingest import Ids
from shared.stream import RawNotice

TAGS = st.sampled_from(
    ["notice", "api-key", "error", "class", "message", "backtrace", "line", "request", "params", "var",
     "session", "cgi-data", "server-environment", "project-root", "environment-name", "current-user", "notifier", "name"]
)  # fmt: skip
ATTRS = st.dictionaries(
    st.sampled_from(["file", "number", "method", "key", "version"]), st.text(max_size=8), max_size=3
)


def element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def build(tag: str, attrs: dict[str, str], inner: list[str]) -> str:
        a = "".join(
            f' {k}="{v.replace("&", "&amp;").replace("<", "&lt;").replace(chr(34), "&quot;")}"'
            for k, v in attrs.items()
        )
        return f"<{tag}{a}>{''.join(inner)}</{tag}>"

    return st.builds(build, TAGS, ATTRS, st.lists(children, max_size=4))


TEXT = st.text(alphabet=st.characters(blacklist_characters="<&", blacklist_categories=("Cs",)), max_size=10)
XML = st.recursive(TEXT, element, max_leaves=30)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.one_of(XML.map(lambda x: f"<notice>{x}</notice>"), XML, st.text(max_size=50)))
def test_decode_is_total(body: str) -> None:
    new = Ids.new()
    entry = RawNotice("hoptoad", new.notice_id, new.location_id, 1, body.encode())
    try:
        decoded = hoptoad.PROTOCOL.decode(entry)
    except Undecodable:
        return
    [(notice, raw)] = decoded
    assert notice["protocol"] == "hoptoad" and raw == entry.body
    assert isinstance(notice["environment"], str)
