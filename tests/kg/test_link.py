from knowmix.kg.index import index_from_triples, load_kg
from knowmix.kg.link import CommonWords, Linker, split_sentences
from knowmix.kg.segmenter import Segmenter
from tests.kg.helpers import ADMIN, COOC, WORLD, encyclopedia_docs


def texts(text):
    return [text[s:e] for s, e in split_sentences(text)]


def test_split_sentences_chinese_and_latin():
    assert texts("他说：“你好。”然后走了！真的吗？是的……好\n下一行") == ["他说：“你好。”", "然后走了！", "真的吗？", "是的……", "好", "下一行"]
    assert texts("Hello world. Pi is 3.14 ok? Yes!  End") == ["Hello world.", "Pi is 3.14 ok?", "Yes!", "End"]
    assert texts("   ") == []
    text = "第一句。 第二句！"
    for s, e in split_sentences(text):
        assert text[s:e].strip() == text[s:e]


def test_match_cutting_a_word_is_rejected_and_counted():
    idx = index_from_triples([("南京", "in", "中国"), ("长江", "in", "中国")])
    linker = Linker(idx, segmenter="jieba")
    res = linker.link("南京市长江大桥")  # jieba: 南京市 / 长江大桥
    assert res.mentions == [] and res.rejected_word_cut == 2
    res = linker.link("长江的水流到南京")
    assert [m.surface for m in res.mentions] == ["长江", "南京"]
    # switchable: without the word check both are found
    assert [m.surface for m in Linker(idx, segmenter="none").link("南京市长江大桥").mentions] == ["南京", "长江"]


def test_kg_names_stay_words_and_longest_match_wins():
    idx = index_from_triples([("南京市", "in", "江苏省"), ("南京", "alias_of", "江苏省"), ("长江大桥", "in", "南京市")])
    res = Linker(idx).link("南京市长江大桥")
    assert [(m.surface, m.start, m.end) for m in res.mentions] == [("南京市", 0, 3), ("长江大桥", 3, 7)]


def test_ambiguity_resolved_by_a_triple_with_another_linked_entity():
    idx = index_from_triples(
        [("库克", "ceo_of", "苹果公司"), ("牛顿", "saw", "苹果树")],
        types={"苹果公司": "company", "苹果树": "plant", "库克": "person", "牛顿": "person"},
        aliases={"苹果公司": ["苹果"], "苹果树": ["苹果"]},
    )
    linker = Linker(idx)
    res = linker.link("库克说苹果发布了新手机")
    assert [(m.surface, m.entity_id) for m in res.mentions] == [("库克", "库克"), ("苹果", "苹果公司")]
    assert (res.ambiguous_resolved, res.ambiguous_dropped) == (1, 0)
    res = linker.link("苹果很好吃")
    assert res.mentions == [] and (res.ambiguous_resolved, res.ambiguous_dropped) == (0, 1)
    res = linker.link("库克和牛顿都说苹果好")  # both candidates have a triple with a linked entity: dropped
    assert [m.entity_id for m in res.mentions] == ["库克", "牛顿"] and res.ambiguous_dropped == 1


def test_linking_on_cooccurrence_fixture_finds_head_and_tail():
    kg = load_kg([ADMIN, WORLD])
    linker = Linker(kg.index)
    rows = [line.rstrip("\n").split("\t") for line in open(COOC, encoding="utf-8")][1:]
    found = 0
    for kgname, src, doc, head, rel, tail, sent in rows:
        res = linker.link(sent)
        for m in res.mentions:
            assert sent[m.start:m.end] == m.surface
            assert m.surface in kg.index.get(m.entity_id).surfaces
        ids = {m.entity_id for m in res.mentions}
        found += head in ids and tail in ids
    assert found >= 0.6 * len(rows), (found, len(rows))


def test_rjieba_equals_jieba_with_kg_names_on_fixture_sentences():
    """The check behind the default segmenter: with the KG's names in the user dictionary (frequencies from
    jieba, totals kept exact) rjieba gives exactly jieba's words on the fixture sentences."""
    kg = load_kg([ADMIN, WORLD])
    words = sorted(s for s in kg.index.surface_to_ids if len(s) >= 2)
    sents = [t for d in encyclopedia_docs(drcd=True) for t in texts(d["text"])]
    sents += [line.split("\t")[3] for line in open(COOC.replace("kg_text_cooccurrence_wiki.tsv", "finre_valid.txt"),
                                                   encoding="utf-8") if line.count("\t") == 3]
    j, r = Segmenter("jieba", words), Segmenter("rjieba", words)
    differ = [s for s in sents if j.boundaries(s) != r.boundaries(s)]
    assert len(sents) > 5000 and differ == []


def test_blockwise_segmentation_equals_whole_sentence_cut():
    kg = load_kg([ADMIN, WORLD])
    seg = Linker(kg.index, segmenter="jieba").segmenter
    sents = [t for d in encyclopedia_docs(drcd=False)[:80] for t in texts(d["text"])]
    for s in sents:
        bounds = seg.boundaries(s)
        inner = seg.inner_positions(s, [(0, len(s))])
        assert inner == set(range(1, len(s))) - bounds, s


def _cooperation_index():
    """合作市 (alias 合作, jieba: vn, 'cooperation') in 甘南藏族自治州; the company 平安 (jieba: a, 'safe') and
    万科 (nz, a proper noun) with a triple between them."""
    return index_from_triples(
        [("合作市", "located_in", "甘南藏族自治州"), ("平安", "合作", "万科")],
        types={"合作市": "county", "甘南藏族自治州": "prefecture"}, aliases={"合作市": ["合作"]},
    )


def test_common_words_are_jieba_tags_and_frequency():
    cw = CommonWords(words=["合作", "平安", "万科", "北京", "中国", "介休市"])
    assert cw.entries["合作"][1] == "vn" and cw.is_common("合作", canonical=False)
    assert cw.is_common("平安", canonical=True)  # tag a: even a canonical name needs corroboration
    assert not cw.is_common("万科", canonical=True) and not cw.is_common("万科", canonical=False)  # nz
    assert not cw.is_common("北京", canonical=False)  # ns, below the frequency bound
    assert cw.is_common("中国", canonical=False) and not cw.is_common("中国", canonical=True)  # ns, very frequent
    assert not cw.is_common("介休市", canonical=False)  # tagged v, but too rare to be an everyday word
    assert not cw.is_common("不在词典里的名字", canonical=False)


def test_common_word_alias_needs_corroboration():
    idx = _cooperation_index()
    linker = Linker(idx)
    res = linker.link("双方将加强合作，共同发展。")
    assert res.mentions == [] and res.common_word_rejected == 1
    # corroborated in the sentence: another linked entity has a triple with it
    res = linker.link("甘南藏族自治州的合作是一座城市。")
    assert [m.entity_id for m in res.mentions] == ["甘南藏族自治州", "合作市"] and res.common_word_corroborated == 1
    # corroborated in the document: the canonical name is linked in another sentence
    doc = ["合作市位于甘肃。", "合作的海拔约三千米。", "双方将加强合作。"]
    results = linker.link_document(doc)
    assert [[m.surface for m in r.mentions] for r in results] == [["合作市"], ["合作"], ["合作"]]
    assert sum(r.common_word_corroborated for r in results) == 2
    assert [r.entity_ids for r in linker.link_document(doc[1:])] == [[], []]
    # --allow-common-aliases alone: 合作 is still a short alias of a county (kg.link_filters), now counted as such
    res = Linker(idx, common_words=None).link("双方将加强合作。")
    assert res.mentions == [] and res.short_alias_rejected == 1 and res.common_word_rejected == 0
    # both rules off: the behaviour before
    assert [m.surface for m in Linker(idx, common_words=None, filters=None).link("双方将加强合作。").mentions] == ["合作"]


def test_common_canonical_name_needs_corroboration_unless_a_proper_noun():
    linker = Linker(_cooperation_index())
    res = linker.link("祝大家平安。")
    assert res.mentions == [] and res.common_word_rejected == 1
    assert [m.surface for m in linker.link("万科发布了年报。").mentions] == ["万科"]
    res = linker.link("平安与万科签约。")  # a triple between them: both kept
    assert [m.surface for m in res.mentions] == ["平安", "万科"] and res.common_word_corroborated == 1


def test_common_alias_beside_its_canonical_name_in_the_sentence():
    linker = Linker(_cooperation_index())
    res = linker.link("合作市又称合作。")
    assert [m.surface for m in res.mentions] == ["合作市", "合作"] and res.common_word_corroborated == 1
