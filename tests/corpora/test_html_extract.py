"""Main-text extraction: quality on the hand-checked Wikipedia page (beside trafilatura), forums, charsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowmix.corpora.extraction_metrics import char_f1, char_precision_recall
from knowmix.corpora.html_extract import decode_html, extract_main_text

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"
WIKI_HTML = FIXTURES / "web_zhwikipedia_page.html"
WIKI_TRUTH = FIXTURES / "web_zhwikipedia_page.groundtruth.json"

# Measured: ours 0.999, trafilatura 2.3.1 0.705 (readability-lxml 0.9: 0.990) on this page.
OUR_MIN_F1 = 0.98

FORUM_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>家里的绿萝叶子发黄怎么办？ - 花草园艺 - 绿意论坛</title></head>
<body>
<div id="hd"><div class="wp"><a href="/">绿意论坛</a> <a href="/forum">论坛首页</a> <a href="/guide">导读</a>
 <a href="/space">家园</a> <a href="/login">登录</a> <a href="/register">立即注册</a></div></div>
<div id="pt" class="bm cl"><a href="/">首页</a> &gt; <a href="/f/12">花草园艺</a> &gt; 家里的绿萝叶子发黄怎么办？</div>
<div id="ct" class="wp cl">
 <h1 class="ts">家里的绿萝叶子发黄怎么办？</h1>
 <div id="postlist" class="pl bm">
  <div id="post_1001" class="plhin">
   <table><tr>
    <td class="pls"><div class="pi"><a class="xw1" href="/u/88">小园丁阿明</a></div>
      <p>等级：中级会员</p><p>积分：356</p><p>帖子：41</p></td>
    <td class="plc">
      <div class="pi"><strong>楼主</strong> <em>发表于 2024-03-02 09:15</em></div>
      <div class="pct"><div class="t_fsz"><div class="t_f" id="postmessage_1001">
        去年秋天买的绿萝，一直放在客厅靠窗的位置，最近一个月下面的老叶子一片接一片地发黄，新叶也长得很小。
        我大概一周浇一次水，每次都浇透，没有施过肥。请问是浇水太多还是缺肥了？应该怎么补救？</div></div></div>
      <div class="sign">养花十年，仍是新手。</div>
      <div class="po"><a href="#">回复</a> <a href="#">引用</a> <a href="#">举报</a></div>
    </td></tr></table>
  </div>
  <div id="post_1002" class="plhin">
   <table><tr>
    <td class="pls"><div class="pi"><a class="xw1" href="/u/90">花间一壶酒</a></div>
      <p>等级：版主</p><p>积分：8920</p><p>帖子：2210</p></td>
    <td class="plc">
      <div class="pi"><strong>沙发</strong> <em>发表于 2024-03-02 10:02</em></div>
      <div class="pct"><div class="t_fsz"><div class="t_f" id="postmessage_1002">
        多半是浇水太勤导致烂根。绿萝喜湿但怕积水，盆土表面干了两三厘米再浇。你把植株倒出来看看根，
        发黑发软的剪掉，换疏松透气的新土，放在散射光处缓一缓，两周内别施肥。</div></div></div>
      <div class="sign">版主签名：有问题请先搜索精华帖，谢谢配合。</div>
      <div class="po"><a href="#">回复</a> <a href="#">引用</a> <a href="#">举报</a></div>
    </td></tr></table>
  </div>
  <div id="post_1003" class="plhin">
   <table><tr>
    <td class="pls"><div class="pi"><a class="xw1" href="/u/91">绿手指</a></div>
      <p>等级：注册会员</p><p>积分：88</p><p>帖子：12</p></td>
    <td class="plc">
      <div class="pi"><strong>板凳</strong> <em>发表于 2024-03-02 11:40</em></div>
      <div class="pct"><div class="t_fsz"><div class="t_f" id="postmessage_1003">
        同意楼上，另外老叶自然黄化也正常，只要新叶健康就不用担心。</div></div></div>
      <div class="sign">每天进步一点点</div>
      <div class="po"><a href="#">回复</a> <a href="#">引用</a> <a href="#">举报</a></div>
    </td></tr></table>
  </div>
  <div id="post_1004" class="plhin">
   <table><tr>
    <td class="pls"><div class="pi"><a class="xw1" href="/u/88">小园丁阿明</a></div>
      <p>等级：中级会员</p><p>积分：356</p><p>帖子：41</p></td>
    <td class="plc">
      <div class="pi"><strong>地板</strong> <em>发表于 2024-03-02 20:18</em></div>
      <div class="pct"><div class="t_fsz"><div class="t_f" id="postmessage_1004">
        谢谢大家，已经换土了！</div></div></div>
      <div class="sign">养花十年，仍是新手。</div>
      <div class="po"><a href="#">回复</a> <a href="#">引用</a> <a href="#">举报</a></div>
    </td></tr></table>
  </div>
 </div>
 <div class="pgs"><a href="?page=1">1</a> <a href="?page=2">2</a> <a href="?page=2">下一页</a></div>
</div>
<div id="ft" class="wp cl"><p>关于我们 | 联系我们 | 免责声明 | 手机版</p>
<p>Copyright © 2008-2024 绿意论坛 版权所有。京ICP备12345678号</p></div>
</body></html>
"""

# A question-and-answer page whose markup says nothing (short, meaningless class names): the question sits
# apart from the answers, and each answer carries a user line, a time and a prose signature.
QA_PAGE = """<html><head><meta charset="utf-8"><title>高铁上可以带充电宝吗_问答</title></head><body>
<div class="t1"><a href="/">问答首页</a><a href="/c/1">出行</a><a href="/c/2">生活</a><a href="/c/3">数码</a><a href="/ask">我要提问</a></div>
<div class="w">
 <div class="q"><h2>高铁上可以带充电宝吗？</h2>
  <div class="qd">下周要坐五个小时的高铁去上海，想带两个两万毫安的充电宝路上用，会不会在安检被扣下？有没有容量限制？</div>
  <div class="qm"><span>提问者：旅行的猫</span><span>2023-07-11</span><span>浏览 2301 次</span></div></div>
 <div class="al">
  <div class="ai"><div class="u"><a href="/u/1">铁路小百科</a> <span>2023-07-11 14:20</span></div>
   <div class="c">可以带。铁路对充电宝的要求比民航宽松，一般单个额定能量不超过一百瓦时就能正常通过安检，两万毫安的充电宝大约七十四瓦时，带两个没有问题。</div>
   <div class="s">出门在外，平安第一。</div><div class="b"><a href="#">赞同 12</a><a href="#">评论</a></div></div>
  <div class="ai"><div class="u"><a href="/u/2">常坐高铁的老王</a> <span>2023-07-11 15:03</span></div>
   <div class="c">我上个月刚带过，安检没人问。建议充电宝上的参数标识清楚一点，看不清的有可能被拦下。</div>
   <div class="s">出门在外，平安第一。</div><div class="b"><a href="#">赞同 5</a><a href="#">评论</a></div></div>
  <div class="ai"><div class="u"><a href="/u/3">小雨</a> <span>2023-07-12 08:47</span></div>
   <div class="c">能带，放心吧。</div>
   <div class="s">愿你出走半生，归来仍是少年。</div><div class="b"><a href="#">赞同 1</a><a href="#">评论</a></div></div>
 </div>
</div>
<div class="f"><a href="/about">关于我们</a> | <a href="/help">帮助中心</a> | <span>©2023 问答网</span></div>
</body></html>
"""


# A news article with a byline, an editor line, related links, reader comments and a copyright footer.
NEWS = """<html><head><meta charset="utf-8"><title>我国首艘大型邮轮完成试航_新闻中心_某某网</title></head><body>
<div class="top"><a href="/">首页</a><a href="/news">新闻</a><a href="/tech">科技</a><a href="/fin">财经</a></div>
<div class="main">
<div class="article">
<h1>我国首艘大型邮轮完成试航</h1>
<div class="info">来源：新华社 2024-01-01 10:00 作者：张三</div>
<div class="article-body">
<p>新华社上海1月1日电 记者从中国船舶集团获悉，我国首艘国产大型邮轮日前顺利完成第二次试航，各项性能指标达到设计要求。</p>
<p>据介绍，这艘邮轮总吨位13.55万，总长323.6米，型宽37.2米，最多可容纳乘客5246人，拥有客房2125间。</p>
<p>专家表示，大型邮轮被誉为造船业“皇冠上的明珠”，此次试航成功标志着我国已经具备大型邮轮的设计建造能力。</p>
<p><img src="a.jpg"></p>
<p>下一步，建造团队将开展内装收尾和系统调试工作，确保邮轮按期交付运营。</p>
</div>
<div class="editor">责任编辑：李四</div>
</div>
<div class="related"><h3>相关新闻</h3><ul>
<li><a href="/1">国产大型邮轮出坞</a></li><li><a href="/2">邮轮产业迎来新机遇</a></li><li><a href="/3">造船业订单创新高</a></li></ul></div>
<div class="cmts"><h3>网友评论</h3>
<div class="cmt-item"><span class="nm">网友甲</span><p>太厉害了，为中国制造点赞！</p></div>
<div class="cmt-item"><span class="nm">网友乙</span><p>什么时候能坐上去看看？</p></div>
<div class="cmt-item"><span class="nm">网友丙</span><p>期待早日交付运营。</p></div>
</div>
</div>
<div class="bottom"><p>Copyright © 2024 某某网 版权所有 违法和不良信息举报电话：12345</p></div>
</body></html>"""

# Posts whose body is split into paragraphs, one a reply with no punctuation at all.
FLOORS_PAGE = """<html><head><meta charset="utf-8"><title>讨论：周末去哪里爬山好？</title></head><body>
<ul class="menu"><li><a href="/">首页</a></li><li><a href="/bbs">社区</a></li></ul>
<div class="thread">
 <div class="floor"><div class="who"><a href="/u/1">山野行者</a><span>1楼</span></div>
  <div class="msg">北京周边有哪些适合新手的山？<p>最好是公共交通能到的，单程不超过两个小时。</p><p>去过香山，人太多了。</p></div>
  <div class="ops"><a href="#">回复</a><a href="#">点赞</a></div></div>
 <div class="floor"><div class="who"><a href="/u/2">背包客小林</a><span>2楼</span></div>
  <div class="msg"><p>推荐凤凰岭，地铁加公交就能到。</p><p>北线难度适中，风景也不错。</p></div>
  <div class="ops"><a href="#">回复</a><a href="#">点赞</a></div></div>
 <div class="floor"><div class="who"><a href="/u/3">阿峰</a><span>3楼</span></div>
  <div class="msg">+1 凤凰岭</div>
  <div class="ops"><a href="#">回复</a><a href="#">点赞</a></div></div>
 <div class="floor"><div class="who"><a href="/u/4">露露</a><span>4楼</span></div>
  <div class="msg">百望山也行，爬一个小时就到顶。</div>
  <div class="ops"><a href="#">回复</a><a href="#">点赞</a></div></div>
</div>
<div class="ft">© 2024 户外社区</div></body></html>"""

def _reference() -> str:
    (entry,) = json.loads(WIKI_TRUTH.read_text(encoding="utf-8")).values()
    return entry["content"]


def test_char_f1_counts_non_whitespace_character_multisets():
    assert char_f1("雄安 新区\n", "雄安新区") == 1.0
    assert char_f1("", "") == 1.0
    assert char_f1("", "雄安") == 0.0
    p, r = char_precision_recall("新新区", "新区")  # one extra 新: precision 2/3, recall 1
    assert (round(p, 4), r) == (0.6667, 1.0)
    assert char_f1("新新区", "新区") == pytest.approx(0.8)


def test_wikipedia_page_f1_beside_trafilatura(capsys):
    trafilatura = pytest.importorskip("trafilatura")
    html = WIKI_HTML.read_bytes()
    reference = _reference()
    title, text = extract_main_text(html, url="https://zh.wikipedia.org/wiki/雄安新区")
    ours = char_f1(text, reference)
    theirs = char_f1(trafilatura.extract(html.decode("utf-8")) or "", reference)
    with capsys.disabled():
        print(f"\nchar F1 on zh.wikipedia 雄安新区: ours {ours:.4f}  trafilatura {theirs:.4f}")
    assert title == "雄安新区"
    assert ours >= OUR_MIN_F1
    assert ours >= theirs - 0.01
    # Wikipedia chrome is gone, prose and section headings stay.
    assert "[编辑]" not in text and "编辑" not in text.split("\n")
    assert "参考文献" not in text and "外部链接" not in text and "查论编" not in text
    assert "雄安新区是中国第19个国家级新区" in text.replace("\n", "")
    assert "\n古代\n" in text and "\n各方评论\n" in text


def test_forum_page_keeps_question_and_every_reply_drops_chrome():
    title, text = extract_main_text(FORUM_PAGE)
    assert title == "家里的绿萝叶子发黄怎么办？"
    for kept in (
        "去年秋天买的绿萝",
        "应该怎么补救？",
        "多半是浇水太勤导致烂根",
        "同意楼上，另外老叶自然黄化也正常",
        "谢谢大家，已经换土了！",
    ):
        assert kept in text
    for chrome in (
        "立即注册", "花草园艺", "小园丁阿明", "花间一壶酒", "等级", "积分", "发表于", "沙发",
        "养花十年", "版主签名", "每天进步一点点", "举报", "下一页", "版权所有", "关于我们",
    ):
        assert chrome not in text, chrome


def test_qa_page_with_meaningless_class_names():
    _, text = extract_main_text(QA_PAGE.encode("utf-8"))
    lines = text.split("\n")
    assert lines[0] == "高铁上可以带充电宝吗？"
    assert "下周要坐五个小时的高铁去上海" in lines[1]
    assert any(line.startswith("可以带。铁路对充电宝") for line in lines)
    assert any(line.startswith("我上个月刚带过") for line in lines)
    assert "能带，放心吧。" in lines
    for chrome in ("问答首页", "提问者", "铁路小百科", "2023-07-11", "出门在外", "愿你出走半生", "赞同", "帮助中心"):
        assert chrome not in text, chrome


def test_page_without_body_gives_empty_text():
    assert extract_main_text("<html><head><title>只有标题</title></head></html>") == ("只有标题", "")
    assert extract_main_text("<html><head><title>空</title></head><body></body></html>")[1] == ""
    assert extract_main_text(b"") == (None, "")
    assert extract_main_text("   ") == (None, "")


GBK_PAGE = (
    "<html><head>{meta}<title>测试页面</title></head><body><div class='nav'><a href='/'>首页</a></div>"
    "<div><p>这是一段用国标码编码的中文正文，用来检查字符集的识别是否正确。我们再多写几句话，确保它足够长，"
    "能够被当作正文保留下来。繁体字「鏡」和生僻字「堃」也应当正确还原。</p></div></body></html>"
)


@pytest.mark.parametrize(
    "meta",
    [
        '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">',
        '<meta charset="GBK">',
        "",  # undeclared: not UTF-8, so GB18030
    ],
)
def test_gbk_bytes_decode_right(meta):
    data = GBK_PAGE.format(meta=meta).encode("gbk")
    title, text = extract_main_text(data)
    assert title == "测试页面"
    assert text.startswith("这是一段用国标码编码的中文正文")
    assert "「鏡」" in text and "「堃」" in text
    assert "首页" not in text


def test_decode_prefers_declared_charset_and_bom():
    assert decode_html("<meta charset=big5><p>臺灣</p>".encode("big5")).endswith("臺灣</p>")
    assert decode_html("\ufeff<p>中文</p>".encode("utf-8")) == "<p>中文</p>"
    # declared UTF-8 but really GBK: falls back rather than producing mojibake
    assert "中文" in decode_html('<meta charset="utf-8"><p>中文</p>'.encode("gbk"))


def test_news_article_drops_byline_related_links_comments_and_footer():
    title, text = extract_main_text(NEWS)
    assert title == "我国首艘大型邮轮完成试航"
    lines = text.split("\n")
    assert len(lines) == 4
    assert lines[0].startswith("新华社上海1月1日电") and lines[-1].startswith("下一步")
    for chrome in ("来源", "责任编辑", "相关新闻", "邮轮产业迎来新机遇", "网友评论", "为中国制造点赞", "版权所有"):
        assert chrome not in text, chrome


def test_forum_posts_split_into_paragraphs_keep_every_part():
    _, text = extract_main_text(FLOORS_PAGE)
    assert text.split("\n") == [
        "北京周边有哪些适合新手的山？",
        "最好是公共交通能到的，单程不超过两个小时。",
        "去过香山，人太多了。",
        "推荐凤凰岭，地铁加公交就能到。",
        "北线难度适中，风景也不错。",
        "+1 凤凰岭",
        "百望山也行，爬一个小时就到顶。",
    ]


def test_deep_nesting_control_characters_and_a_lone_short_paragraph():
    prose = "深层嵌套的正文内容，测试遍历不会触到递归上限。这里再写一些字，让它成为正文。"
    deep = "<html><body>" + "<div>" * 1500 + f"<p>{prose}</p>" + "</div>" * 1500 + "</body></html>"
    assert extract_main_text(deep)[1] == prose
    assert extract_main_text(f"<html><body>\x00\x01<p>{prose}</p></body></html>")[1] == prose
    assert extract_main_text("<p>只有一段很短的文字。</p>")[1] == "只有一段很短的文字。"
    assert extract_main_text("<html><body><a href=/>首页</a><a href=/x>关于</a></body></html>")[1] == ""
