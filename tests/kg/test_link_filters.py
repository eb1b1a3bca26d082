"""The precision rules of kg.link_filters, each on planted sentences that the linker gets wrong without the rule."""

from dataclasses import replace

import pytest

from knowmix.kg.index import index_from_triples
from knowmix.kg.link import Linker
from knowmix.kg.link_filters import LinkFilters, in_title
from knowmix.errors import UserError


@pytest.fixture(scope="module")
def index():
    """北京/中国 (untyped places), companies 春兰 / 中国铝业 / 万科 / 国药控股有限公司 (an organisation name holding
    the verb 控股); the county 新罗区 (alias 新罗) in the prefecture 龙岩市 (alias 龙岩)."""
    return index_from_triples(
        [("北京", "located_in", "中国"), ("春兰", "合作", "万科"), ("中国铝业", "合作", "万科"),
         ("国药控股有限公司", "合作", "万科"),
         ("新罗区", "located_in", "龙岩市")],
        types={"新罗区": "county", "龙岩市": "prefecture"}, aliases={"新罗区": ["新罗"], "龙岩市": ["龙岩"]},
    )


@pytest.fixture(scope="module")
def linkers(index):
    """rule name -> (linker with every rule, linker with only that rule off)."""
    on = Linker(index)
    return {rule: (on, Linker(index, filters=replace(LinkFilters(), **{rule: False}))) for rule in LinkFilters.RULES}


def surfaces(res):
    return [m.surface for m in res.mentions]


@pytest.mark.parametrize("sentence, surface", [
    ("北京商报记者报道了这件事。", "北京"),  # an organisation suffix right after the place
    ("江苏春兰进出口有限公司成立了。", "春兰"),  # name-like words, then a legal form
    ("北京无线数码科技有限公司宣布上市。", "北京"),
])
def test_org_prefix_is_not_linked(linkers, sentence, surface):
    on, off = linkers["org_prefix"]
    assert surface in surfaces(off.link(sentence))  # without the rule: linked
    res = on.link(sentence)
    assert surface not in surfaces(res) and res.org_prefix_rejected == 1


@pytest.mark.parametrize("sentence, surface", [
    ("中国铝业公司发布了公告。", "中国铝业"),  # a legal form right after a company: its longer name
    ("北京的一家公司发布了公告。", "北京"),  # a function word ends the name
    ("万科收购了一家公司。", "万科"),  # so does a verb
    ("中国银行业发展很快。", "中国"),  # 银行 inside the word 银行业 is no suffix
    ("北京高级人民法院受理了此案。", "北京"),  # a public body named after the place: not in the suffix list
])
def test_org_prefix_keeps_names_that_start_no_organisation(linkers, sentence, surface):
    on, _ = linkers["org_prefix"]
    res = on.link(sentence)
    assert surface in surfaces(res) and res.org_prefix_rejected == 0


def test_verb_of_the_kgs_organisation_names_does_not_end_the_name(linkers):
    """控股 is a verb in jieba's dictionary, so the plain rule takes it for the predicate (中国 linked); the KG's own
    organisation name 国药控股有限公司 shows it is a word of names."""
    sentence = "中国光大金融控股有限公司发布了公告。"
    on, off = linkers["org_name_verbs"]
    assert "中国" in surfaces(off.link(sentence))
    res = on.link(sentence)
    assert "中国" not in surfaces(res) and res.org_prefix_rejected == 1 and res.org_name_verb_rejected == 1


@pytest.mark.parametrize("sentence", ["万科收购中粮地产公司。", "万科持有中粮地产公司的股份。"])
def test_verb_no_organisation_name_holds_still_ends_the_name(linkers, sentence):
    on, _ = linkers["org_name_verbs"]
    res = on.link(sentence)
    assert "万科" in surfaces(res) and res.org_prefix_rejected == 0


def test_short_admin_alias_needs_corroboration(linkers):
    on, off = linkers["short_alias"]
    sentence = "但遭到了新罗的反击。"  # Silla, not the district of 龙岩
    assert surfaces(off.link(sentence)) == ["新罗"]
    res = on.link(sentence)
    assert res.mentions == [] and res.short_alias_rejected == 1 and res.common_word_rejected == 0
    # corroborated in the sentence (a triple with 龙岩市) ...
    res = on.link("龙岩的新罗发展很快。")
    assert surfaces(res) == ["龙岩", "新罗"] and res.short_alias_corroborated == 1
    # ... or in the document (the canonical name in another sentence)
    results = on.link_document(["新罗区位于福建。", "新罗发展很快。"])
    assert [surfaces(r) for r in results] == [["新罗区"], ["新罗"]]
    assert results[1].short_alias_corroborated == 1 and results[1].short_alias_rejected == 0
    # a short alias of a prefecture is not concerned
    assert surfaces(on.link("他去了龙岩。")) == ["龙岩"]


def test_mentions_inside_a_title_are_not_linked(linkers):
    on, off = linkers["title"]
    sentence = "他读了《北京今昔》一书。"
    assert surfaces(off.link(sentence)) == ["北京"]
    res = on.link(sentence)
    assert res.mentions == [] and res.title_rejected == 1
    assert surfaces(on.link("《今昔》一书在北京出版。")) == ["北京"]  # after the title has closed
    assert in_title("《甲》乙《丙》", 5, 6) and not in_title("《甲》乙《丙》", 3, 4) and not in_title("《甲乙", 1, 2)


def test_demonym_is_not_linked(linkers):
    on, off = linkers["demonym"]
    sentence = "他是一个中国人。"
    assert surfaces(off.link(sentence)) == ["中国"]
    res = on.link(sentence)
    assert res.mentions == [] and res.demonym_rejected == 1
    assert surfaces(on.link("中国人民在前进。")) == ["中国"]  # 人民: a word of its own, 中国 stays


def test_filters_none_is_the_linker_without_the_rules(index):
    plain = Linker(index, filters=None)
    for sentence in ("北京商报记者报道。", "但遭到了新罗的反击。", "他读了《北京今昔》一书。", "他是一个中国人。"):
        assert plain.link(sentence).mentions


def test_without_parses_the_switch():
    assert LinkFilters.without("") == LinkFilters()
    assert LinkFilters.without("all") is None
    assert LinkFilters.without("title, demonym") == LinkFilters(title=False, demonym=False)
    with pytest.raises(UserError, match="unknown rule"):
        LinkFilters.without("org_prefix,bogus")
