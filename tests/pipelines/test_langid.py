"""Language identification with the lid.176 model bundled in knowmix (pipelines/resources/)."""

import os
import pickle

import pytest

from knowmix.pipelines.langid import LanguageIdentifier, lid_model_path


@pytest.fixture(scope="module")
def lid():
    return LanguageIdentifier()


def test_model_is_the_bundled_lid_176():
    import hashlib

    path = lid_model_path()
    assert path.endswith(os.path.join("pipelines", "resources", "lid.176.ftz"))
    with open(path, "rb") as fh:  # the published lid.176.ftz, unmodified (see its licence file)
        assert hashlib.sha256(fh.read()).hexdigest() == "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


@pytest.mark.parametrize(
    "text, lang",
    [
        ("１９９７年，是中国发展历史上非常重要的很不平凡的一年。中国人民决心继承邓小平同志的遗志。", "zh"),
        ("在歐洲，梵語的學術研究，由德國學者陸特和漢斯雷頓開創。", "zh"),
        ("The quick development of the economy has brought great changes to the lives of ordinary people.", "en"),
        ("東京は日本の首都です。人口は約1400万人で、世界有数の大都市です。", "ja"),
        ("서울은 대한민국의 수도입니다.", "ko"),
    ],
    ids=["zh", "zh-traditional", "en", "ja", "ko"],
)
def test_predicts_language(lid, text, lang):
    got, score = lid.predict(text)
    assert got == lang
    assert 0.5 < score <= 1.0


def test_kana_free_han_text_is_not_japanese(lid):
    # lid.176 alone says ja (0.73) for this People's Daily weather report
    text = (
        "受暖湿气流影响，今天晚上到明天，贵州南部、江南、华南西部和北部将有小到中雨。受较强冷空气影响，新疆北部、"
        "甘肃西部、青海北部、宁夏、内蒙古大部有5—6级偏北风；冷空气前锋过后上述地区的气温将下降6—12摄氏度；"
        "内蒙古东部、黑龙江西北部有小雪。"
    )
    labels, _ = lid.model.predict(text, k=1)
    assert labels[0] == "__label__ja"
    lang, score = lid.predict(text)
    assert lang == "zh" and score > 0.9


def test_newlines_empty_and_cap(lid):
    assert lid.predict("") == ("", 0.0)
    assert lid.predict(" \n\n ") == ("", 0.0)
    multi = "中国人民决心继承邓小平同志的遗志。\n继续把建设有中国特色社会主义事业推向前进。\r\n香港回归。"
    assert lid.predict(multi)[0] == "zh"
    long_text = "中国政府顺利恢复对香港行使主权。" * 200 + "The rest is English text. " * 500
    assert lid.predict(long_text)[0] == "zh"  # only the first max_chars characters are looked at
    assert LanguageIdentifier(max_chars=100_000).predict(long_text)[0] == "en"


def test_pickles_without_the_model(lid):
    lid.predict("中文")
    assert lid._model is not None
    data = pickle.dumps(lid)
    assert len(data) < 1000
    clone = pickle.loads(data)
    assert clone._model is None
    assert clone.predict("中国人民决心继承邓小平同志的遗志。")[0] == "zh"
