"""docs/lecture.md, the companion: it is what results/ gives, and it covers the lecture's claims list both ways."""

import copy
import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location('lecture', os.path.join(REPO, 'docs', 'lecture.py'))
lecture = sys.modules['lecture'] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(lecture)

CLAIMS = [claim for _, _, claims in lecture.LECTURE for claim in claims]


@pytest.fixture(scope='module')
def results():
    return lecture.load_results()


def test_the_committed_companion_is_what_the_results_give(results):
    with open(lecture.OUTPUT) as file:
        assert file.read() == lecture.render(results), 'docs/lecture.md is out of date: run python docs/lecture.py'


def test_a_changed_number_or_verdict_changes_the_companion(results):
    changed = copy.deepcopy(results)
    claim = changed['initialization']['claims'][0]
    claim['value'] += 0.01
    assert lecture.render(changed) != lecture.render(results)
    claim['verdict'] = 'contradicted'
    assert '**contradicted**' in lecture.render(changed).split(claim['claim'])[1].split('\n')[0]


def test_a_star_in_a_claims_text_stands_for_what_the_run_chose_and_nothing_more():
    texts = ['The best variant on validation (dropout) improves generalization (1000 training images)', 'L2 (x)']
    results = {'overfitting': {'claims': [{'claim': text} for text in texts]}}
    pattern = 'The best variant on validation (*) improves generalization (1000 training images)'
    assert lecture.find_claim(results, 'overfitting', pattern)['claim'] == texts[0]
    for missing in (pattern.replace('1000', '5000'), 'L2 (x', 'L2 (x)*y', 'L2 (x)'.replace('(', '[')):
        with pytest.raises(KeyError):
            lecture.find_claim(results, 'overfitting', missing)


def test_every_lecture_claim_has_a_verdict_or_says_why_not(results):
    text = lecture.render(results)
    for claim in CLAIMS:
        kinds = [bool(claim.evidence), bool(claim.not_testable), bool(claim.open)]
        assert sum(kinds) == 1, f'{claim.text}: give evidence, a reason it is not testable here, or what will test it'
        for experiment, claim_text in claim.evidence:
            lecture.find_claim(results, experiment, claim_text)  # KeyError names a claim that results/ lacks
        section = text.split(claim.text, 1)[1].split('\n### ', 1)[0]
        assert 'Verdict: **' in section or 'not testable here' in section or 'not tested yet' in section, claim.text
        if claim.figure:
            assert os.path.exists(os.path.join(REPO, 'results', *claim.figure)), claim.figure


def test_every_claim_in_the_results_is_cited(results):
    cited = {pair for claim in CLAIMS for pair in claim.evidence} | lecture.ENGINEERING
    missing = [
        (name, claim['claim']) for name, result in results.items() for claim in result.get('claims', [])
        if not any(where == name and lecture.cites(text, claim['claim']) for where, text in cited)
    ]  # fmt: skip
    assert not missing, f'claims that docs/lecture.py does not cite: {missing}'


def test_the_lectures_claims_list_holds_the_eight_that_issue_24_names():
    texts = ' '.join(claim.text for claim in CLAIMS)
    for words in ('co-adapting', 'standout input', 'much like dropout', 'activity hooks', 'zero-centred',
                  'e^x is expensive', '(γ, β)', 'too little data'):  # fmt: skip
        assert words in texts, words
    assert len(CLAIMS) >= 35


def test_every_committed_run_confirms_on_its_own_seeds_that_its_development_never_used(results):
    for name, result in results.items():
        config = result['config']
        development = set(config.get('development_seeds') or ())
        assert not set(result['seeds']) & development, f'{name}: results.json seeds include development seeds'
        if config.get('seeds'):  # the header names the run's confirmation seeds, not every seed a stage trained
            assert result['seeds'] == list(config['seeds']), name
